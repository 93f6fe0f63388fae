package dev.pdsidecar.client;

import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import java.time.Duration;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * Paces reconnects at 100 ms doubling to 1 s, so a restarted sidecar is found again quickly.
 * grpc-java has no setting for it (its own backoff starts at 1 s and grows to 120 s): this
 * watches the channel and, while it is in TRANSIENT_FAILURE, cuts each wait short with {@link
 * ManagedChannel#resetConnectBackoff()} on that schedule, until the channel is READY again.
 */
final class ReconnectPacer {
  static final Duration INITIAL = Duration.ofMillis(100);
  static final Duration MAX = Duration.ofSeconds(1);

  private final ManagedChannel channel;
  private final ScheduledExecutorService scheduler;
  private long delayNanos = INITIAL.toNanos();
  private boolean ticking;

  ReconnectPacer(ManagedChannel channel, ScheduledExecutorService scheduler) {
    this.channel = channel;
    this.scheduler = scheduler;
  }

  void start() {
    watch(channel.getState(false));
  }

  private void watch(ConnectivityState seen) {
    channel.notifyWhenStateChanged(seen, this::changed);
  }

  private void changed() {
    ConnectivityState state = channel.getState(false);
    if (state == ConnectivityState.SHUTDOWN) {
      return;
    }
    if (state == ConnectivityState.TRANSIENT_FAILURE) {
      startTicking();
    }
    watch(state);
  }

  private synchronized void startTicking() {
    if (!ticking) {
      ticking = true;
      delayNanos = INITIAL.toNanos();
      schedule();
    }
  }

  private synchronized void tick() {
    switch (channel.getState(false)) {
      case TRANSIENT_FAILURE -> channel.resetConnectBackoff();
      case CONNECTING -> {}
      default -> { // READY, IDLE, SHUTDOWN: nothing to pace any more
        ticking = false;
        return;
      }
    }
    delayNanos = Math.min(delayNanos * 2, MAX.toNanos());
    schedule();
  }

  private void schedule() {
    if (scheduler.isShutdown()) {
      ticking = false;
      return;
    }
    try {
      scheduler.schedule(this::tick, delayNanos, TimeUnit.NANOSECONDS);
    } catch (RejectedExecutionException closing) {
      ticking = false;
    }
  }
}
