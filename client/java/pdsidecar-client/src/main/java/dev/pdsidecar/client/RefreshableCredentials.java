package dev.pdsidecar.client;

import dev.pdsidecar.v1.GetCredentialsResponse;
import dev.pdsidecar.v1.WatchCredentialsRequest;
import dev.pdsidecar.v1.WatchCredentialsResponse;
import io.grpc.Status;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.time.Duration;
import java.time.Instant;
import java.util.EnumSet;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * An account's credentials, kept current for a whole sync by one WatchCredentials stream; made by
 * {@link CredentialsClient#refreshableCredentials(AccountRef)}. Modelled on SPIFFE's X509Source:
 *
 * <ul>
 *   <li><b>First value before return</b>: the factory returns once the first value is in, or
 *       throws the account's error (or the last retryable one) after the client's default
 *       deadline.
 *   <li><b>Reads with no I/O and no lock</b> ({@link #accessToken()}, {@link #credentials()},
 *       {@link #expiresAt()}, {@link #frozenCredentials()}): one volatile read of an immutable
 *       snapshot, replaced whole; any thread, any time. Take {@link #frozenCredentials()} once when
 *       several fields must belong together.
 *   <li><b>Rotation is pushed</b> by the sidecar ahead of expiry; there is nothing to refresh.
 *   <li><b>A source 401</b>: {@link #reject(String, Duration)} asks the sidecar for another value
 *       and returns once this object holds one, or throws DEADLINE_EXCEEDED.
 *   <li><b>Sidecar restarts</b>: a stream ending UNAVAILABLE, RESOURCE_EXHAUSTED,
 *       DEADLINE_EXCEEDED, ABORTED or CANCELLED is opened again with backoff (0.1 s doubling to
 *       5 s, RetryInfo's delay when sent, at once for SIDECAR_STOPPING); reads keep the last value
 *       meanwhile.
 *   <li><b>Account problems</b> (ACCOUNT_DEAD, PERMISSION_DENIED, ...) end the watch: every later
 *       read throws that {@link CredentialsException}, so the sync stops.
 *   <li><b>Change signal</b>: a listener given to the factory, and {@link #nextUpdate()}.
 *   <li>{@link #close()} cancels the stream; later reads throw CANCELLED. Close these objects
 *       before their client.
 * </ul>
 */
public final class RefreshableCredentials implements AutoCloseable {
  static final Duration BACKOFF_INITIAL = Duration.ofMillis(100);
  static final Duration BACKOFF_MAX = Duration.ofSeconds(5);
  static final Duration RETRY_AFTER_MAX = Duration.ofSeconds(30);
  /** How long {@link #reject(String)} waits for a value other than the rejected one. */
  public static final Duration REJECT_TIMEOUT = Duration.ofSeconds(30);
  private static final int REJECTED_KEPT = 8;
  // A stream ending with one of these is opened again; any other code is the account's (or the
  // caller's) problem and ends the watch. CANCELLED is the server's: ours happens only on close.
  private static final Set<Status.Code> RECONNECT_CODES =
      EnumSet.of(
          Status.Code.UNAVAILABLE,
          Status.Code.RESOURCE_EXHAUSTED,
          Status.Code.DEADLINE_EXCEEDED,
          Status.Code.ABORTED,
          Status.Code.CANCELLED);
  private static final System.Logger LOG =
      System.getLogger(RefreshableCredentials.class.getName());

  /** Opens one WatchCredentials stream into the observer. */
  @FunctionalInterface
  interface StreamOpener {
    void open(ClientResponseObserver<WatchCredentialsRequest, WatchCredentialsResponse> observer);
  }

  /** GetCredentials with {@code rejected_access_token}, within {@code deadline}. */
  @FunctionalInterface
  interface Refetch {
    GetCredentialsResponse fetch(String rejectedAccessToken, Duration deadline);
  }

  private final String name;
  private final StreamOpener opener;
  private final Refetch refetch;
  private final ScheduledExecutorService scheduler;
  private final Consumer<FrozenCredentials> onUpdate;

  // The read path: written under lock, read without it.
  private volatile FrozenCredentials current;
  private volatile CredentialsException failure; // set once the watch ended for good, or closed

  private final Object lock = new Object();
  // Guarded by lock.
  private CompletableFuture<FrozenCredentials> nextUpdate = new CompletableFuture<>();
  private Watch watch; // the open stream; null between streams
  private ScheduledFuture<?> reopening;
  private Duration backoff = Duration.ZERO;
  private CredentialsException lastRetryable;
  private final Set<String> rejected = new LinkedHashSet<>(); // the last few reject() tokens
  private int reconnects;
  private boolean closed;

  private RefreshableCredentials(
      String name,
      StreamOpener opener,
      Refetch refetch,
      ScheduledExecutorService scheduler,
      Consumer<FrozenCredentials> onUpdate) {
    this.name = name;
    this.opener = opener;
    this.refetch = refetch;
    this.scheduler = scheduler;
    this.onUpdate = onUpdate;
  }

  /** Opens the stream and returns once the first value is in (see the class comment). */
  static RefreshableCredentials start(
      String name,
      StreamOpener opener,
      Refetch refetch,
      ScheduledExecutorService scheduler,
      Duration timeout,
      Consumer<FrozenCredentials> onUpdate) {
    RefreshableCredentials credentials =
        new RefreshableCredentials(name, opener, refetch, scheduler, onUpdate);
    credentials.awaitFirst(timeout);
    return credentials;
  }

  private void awaitFirst(Duration timeout) {
    long deadline = System.nanoTime() + timeout.toNanos();
    CredentialsException error;
    synchronized (lock) {
      openStream();
      waitWhile(() -> current == null && failure == null, deadline);
      if (current != null) {
        return;
      }
      error = failure != null ? failure : noValue(timeout, lastRetryable);
    }
    close();
    throw error;
  }

  // --- reads: no I/O, no lock ---

  /** The current value, every field from one message; throws the error that ended the watch. */
  public FrozenCredentials frozenCredentials() {
    CredentialsException ended = failure;
    if (ended != null) {
      throw ended.rethrown();
    }
    return current;
  }

  public String accessToken() {
    return frozenCredentials().accessToken();
  }

  /** Every field under Airweave names (unmodifiable). */
  public Map<String, String> credentials() {
    return frozenCredentials().credentials();
  }

  public Optional<Instant> expiresAt() {
    return frozenCredentials().expiresAt();
  }

  /**
   * Completes with the next value that differs from the current one; completes exceptionally
   * with the {@link CredentialsException} that ends the watch (CANCELLED on close).
   */
  public CompletableFuture<FrozenCredentials> nextUpdate() {
    synchronized (lock) {
      return nextUpdate.copy();
    }
  }

  /** How many times the stream was opened again after it ended. */
  public int reconnects() {
    synchronized (lock) {
      return reconnects;
    }
  }

  // --- a source 401 ---

  /** {@link #reject(String, Duration)} with {@link #REJECT_TIMEOUT}. */
  public FrozenCredentials reject(String token) {
    return reject(token, REJECT_TIMEOUT);
  }

  /**
   * The source answered 401 with {@code token}: returns a value with another token. Returns at
   * once if this object already holds another; else asks the sidecar (GetCredentials with {@code
   * rejected_access_token}) and waits until the held token differs, throwing {@link
   * CredentialsException} DEADLINE_EXCEEDED after {@code timeout} (or the refetch's own error).
   */
  public FrozenCredentials reject(String token, Duration timeout) {
    long deadline = System.nanoTime() + timeout.toNanos();
    FrozenCredentials held = frozenCredentials();
    if (!held.accessToken().equals(token)) {
      return held; // already rotated past it
    }
    synchronized (lock) {
      rejected.remove(token);
      rejected.add(token);
      for (Iterator<String> oldest = rejected.iterator(); rejected.size() > REJECTED_KEPT; ) {
        oldest.next();
        oldest.remove();
      }
    }
    Duration left = Duration.ofNanos(Math.max(deadline - System.nanoTime(), 1_000_000));
    FrozenCredentials fresh = FrozenCredentials.of(refetch.fetch(token, left));
    Announcement installed = null;
    synchronized (lock) {
      if (!fresh.accessToken().equals(token) && holds(token)) {
        installed = install(fresh);
      }
    }
    if (installed != null) {
      installed.run();
    }
    synchronized (lock) {
      waitWhile(() -> holds(token), deadline);
      if (holds(token)) {
        throw new CredentialsException(
            Status.Code.DEADLINE_EXCEEDED,
            "the source rejected the access token and the sidecar had no other within "
                + seconds(timeout)
                + " s");
      }
    }
    return frozenCredentials();
  }

  /** Waits on the lock (held) while {@code waiting} says so, until {@code deadline} (nanoTime). */
  private void waitWhile(java.util.function.BooleanSupplier waiting, long deadline) {
    try {
      while (waiting.getAsBoolean()) {
        long left = deadline - System.nanoTime();
        if (left <= 0) {
          return;
        }
        TimeUnit.NANOSECONDS.timedWait(lock, left);
      }
    } catch (InterruptedException interrupted) {
      Thread.currentThread().interrupt(); // the caller sees the value as it is, and the flag
    }
  }

  private boolean holds(String token) {
    return failure == null && current.accessToken().equals(token);
  }

  // --- the stream ---

  /** One WatchCredentials stream; callbacks from a stream that is no longer the open one are dropped. */
  private final class Watch
      implements ClientResponseObserver<WatchCredentialsRequest, WatchCredentialsResponse> {
    private ClientCallStreamObserver<WatchCredentialsRequest> call;

    @Override
    public void beforeStart(ClientCallStreamObserver<WatchCredentialsRequest> requestStream) {
      call = requestStream;
    }

    @Override
    public void onNext(WatchCredentialsResponse message) {
      received(this, FrozenCredentials.of(message));
    }

    @Override
    public void onError(Throwable error) {
      ended(this, CredentialsException.from(error));
    }

    @Override
    public void onCompleted() {
      ended(this, null); // the server ended the stream without an error: open it again
    }

    void cancel() {
      if (call != null) {
        call.cancel("closed", null);
      }
    }
  }

  private void openStream() { // holds lock
    Watch opened = new Watch();
    watch = opened;
    opener.open(opened);
  }

  private void reopen() {
    synchronized (lock) {
      reopening = null;
      if (!closed) {
        openStream();
      }
    }
  }

  private void received(Watch from, FrozenCredentials value) {
    Announcement installed;
    synchronized (lock) {
      if (from != watch || closed) {
        return;
      }
      backoff = Duration.ZERO;
      FrozenCredentials held = current;
      // A rejected token arriving late (sent before the refetch) must not win back.
      boolean stale =
          held != null
              && rejected.contains(value.accessToken())
              && !held.accessToken().equals(value.accessToken());
      if (stale) {
        return;
      }
      installed = install(value);
    }
    installed.run();
  }

  private void ended(Watch from, CredentialsException error) {
    CompletableFuture<FrozenCredentials> waiting = null;
    synchronized (lock) {
      if (from != watch || closed) {
        return;
      }
      watch = null;
      Duration pause = reconnectDelay(error, backoff);
      if (pause == null) {
        failure = error;
        waiting = nextUpdate;
        lock.notifyAll();
      } else {
        backoff = pause;
        if (error != null) {
          lastRetryable = error;
        }
        reconnects++;
        LOG.log(System.Logger.Level.DEBUG, "{0}: stream ended ({1}); again in {2}", name,
            error == null ? "completed" : error.code() + " " + error.reason(), pause);
        if (pause.isZero()) {
          openStream();
        } else {
          try {
            reopening = scheduler.schedule(this::reopen, pause.toNanos(), TimeUnit.NANOSECONDS);
          } catch (RejectedExecutionException clientClosed) {
            failure = new CredentialsException(
                Status.Code.CANCELLED, "the client was closed before these credentials");
            waiting = nextUpdate;
            lock.notifyAll();
          }
        }
      }
    }
    if (waiting != null) {
      waiting.completeExceptionally(failure);
    }
  }

  /** Delay before opening the stream again; null when the error ends the watch. */
  static Duration reconnectDelay(CredentialsException error, Duration previous) {
    if (error != null && !RECONNECT_CODES.contains(error.code())) {
      return null;
    }
    if (error != null && "SIDECAR_STOPPING".equals(error.reason())) {
      return Duration.ZERO; // wait-for-ready holds the new stream until the next sidecar answers
    }
    if (error != null && error.retryAfter().isPresent()) {
      Duration after = error.retryAfter().get();
      return after.compareTo(RETRY_AFTER_MAX) > 0 ? RETRY_AFTER_MAX : after;
    }
    Duration doubled = previous.multipliedBy(2);
    if (doubled.compareTo(BACKOFF_INITIAL) < 0) {
      return BACKOFF_INITIAL;
    }
    return doubled.compareTo(BACKOFF_MAX) > 0 ? BACKOFF_MAX : doubled;
  }

  /** What to tell once the lock is released: the waiters and the listener of a new value. */
  private interface Announcement extends Runnable {}

  private Announcement install(FrozenCredentials value) { // holds lock
    FrozenCredentials before = current;
    current = value;
    lock.notifyAll();
    boolean changed =
        before == null
            || !before.credentials().equals(value.credentials())
            || !before.expiresAt().equals(value.expiresAt());
    if (!changed) {
      return () -> {};
    }
    CompletableFuture<FrozenCredentials> waiting = nextUpdate;
    nextUpdate = new CompletableFuture<>();
    // The listener first: whoever waits on nextUpdate() finds the listener already told.
    return () -> {
      if (onUpdate != null) {
        try {
          onUpdate.accept(value);
        } catch (RuntimeException listenerFailed) {
          LOG.log(System.Logger.Level.WARNING, name + ": the update listener threw", listenerFailed);
        }
      }
      waiting.complete(value);
    };
  }

  private static CredentialsException noValue(Duration timeout, CredentialsException last) {
    if (last != null) {
      return last.withMessage(
          "no credentials within " + seconds(timeout) + " s; last: " + last.statusMessage());
    }
    return new CredentialsException(
        Status.Code.DEADLINE_EXCEEDED,
        "no credentials from the sidecar within " + seconds(timeout) + " s");
  }

  private static String seconds(Duration d) {
    return String.format(java.util.Locale.ROOT, "%.3g", d.toNanos() / 1e9);
  }

  /** Cancels the stream; idempotent. Later reads throw CANCELLED ("closed"). */
  @Override
  public void close() {
    CompletableFuture<FrozenCredentials> waiting;
    CredentialsException closedError;
    synchronized (lock) {
      if (closed) {
        return;
      }
      closed = true;
      if (reopening != null) {
        reopening.cancel(false);
      }
      if (watch != null) {
        watch.cancel();
        watch = null;
      }
      closedError = new CredentialsException(Status.Code.CANCELLED, "closed");
      failure = closedError;
      waiting = nextUpdate;
      lock.notifyAll();
    }
    waiting.completeExceptionally(closedError);
  }

  @Override
  public String toString() {
    String state;
    synchronized (lock) {
      CredentialsException ended = failure;
      state =
          closed
              ? "closed"
              : ended == null
                  ? "current"
                  : "failed " + ended.code() + (ended.reason().isEmpty() ? "" : " " + ended.reason());
    }
    return "RefreshableCredentials{" + name + ", " + state + "}";
  }
}
