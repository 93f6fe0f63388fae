package dev.pdsidecar.client;

import dev.pdsidecar.v1.CredentialsServiceGrpc;
import dev.pdsidecar.v1.CredentialsServiceGrpc.CredentialsServiceBlockingStub;
import dev.pdsidecar.v1.CredentialsServiceGrpc.CredentialsServiceStub;
import dev.pdsidecar.v1.GetCredentialsResponse;
import dev.pdsidecar.v1.ListAccountsRequest;
import dev.pdsidecar.v1.ListAccountsResponse;
import dev.pdsidecar.v1.RefreshTokenRequest;
import dev.pdsidecar.v1.RefreshTokenResponse;
import dev.pdsidecar.v1.ValidateAccountResponse;
import dev.pdsidecar.v1.WatchCredentialsResponse;
import io.grpc.CallCredentials;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.ConnectivityState;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import io.grpc.stub.ClientCalls;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.Executor;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * A client of one pdsidecar: typed calls, {@link CredentialsException} for every failure, and
 * {@link RefreshableCredentials}, credentials kept current for a whole sync.
 *
 * <pre>{@code
 * try (CredentialsClient client = CredentialsClient.builder("unix:/run/pdsidecar.sock").build();
 *      RefreshableCredentials creds =
 *          client.refreshableCredentials(AccountRef.of("proj_abc", "apn_xyz", "notion"))) {
 *   String token = creds.accessToken(); // no I/O: always the current token
 * }
 * }</pre>
 *
 * <p>Every call has a deadline (10 s unless the builder says otherwise) and wait-for-ready on, so
 * a call made while the sidecar restarts waits for it; UNAVAILABLE is retried by gRPC's retry
 * policy inside that deadline. Anything else is the caller's to retry (see {@link
 * CredentialsException#retryAfter()}). Thread-safe; one client per sidecar is enough.
 */
public final class CredentialsClient implements AutoCloseable {
  /** The default per-call deadline. */
  public static final Duration DEFAULT_DEADLINE = Duration.ofSeconds(10);

  static final String SERVICE = "pdsidecar.v1.CredentialsService";
  // Held so the level set on it stays (java.util.logging keeps loggers weakly).
  private static final java.util.logging.Logger BOOTSTRAP_LOGGER =
      java.util.logging.Logger.getLogger(
          "io.grpc.netty.shaded.io.netty.bootstrap.AbstractBootstrap");
  private static final Duration PROBE_DEADLINE = Duration.ofSeconds(1);

  private final String target;
  private final ManagedChannel owned; // null when the channel was given to the builder
  private final Channel channel;
  private final boolean tls;
  private final Duration deadline;
  private final boolean waitForReady;
  private final CredentialsServiceBlockingStub blocking;
  private final CredentialsServiceStub async;
  private final ScheduledThreadPoolExecutor scheduler;

  private CredentialsClient(Builder b, ManagedChannel owned, Channel channel) {
    this.target = b.target;
    this.owned = owned;
    this.channel = channel;
    this.tls = b.tlsCa != null;
    this.deadline = b.deadline;
    this.waitForReady = b.waitForReady;
    this.scheduler = new ScheduledThreadPoolExecutor(1, daemon("pdsidecar-client"));
    scheduler.setRemoveOnCancelPolicy(true);
    CredentialsServiceBlockingStub blockingStub = CredentialsServiceGrpc.newBlockingStub(channel);
    CredentialsServiceStub asyncStub = CredentialsServiceGrpc.newStub(channel);
    if (b.waitForReady) {
      blockingStub = blockingStub.withWaitForReady();
      asyncStub = asyncStub.withWaitForReady();
    }
    if (b.apiToken != null) {
      CallCredentials bearer = new BearerToken(b.apiToken);
      blockingStub = blockingStub.withCallCredentials(bearer);
      asyncStub = asyncStub.withCallCredentials(bearer);
    }
    this.blocking = blockingStub;
    this.async = asyncStub;
    if (owned != null) {
      new ReconnectPacer(owned, scheduler).start();
    }
  }

  /** A builder for a client of the sidecar at {@code host:port} or {@code unix:/abs/path}. */
  public static Builder builder(String target) {
    return new Builder(target);
  }

  /** Construction options; checked by {@link #build()}, never at the first call. */
  public static final class Builder {
    private final String target;
    private Path tlsCa;
    private Path tlsCert;
    private Path tlsKey;
    private String tlsServerName;
    private String apiToken;
    private Duration deadline = DEFAULT_DEADLINE;
    private boolean waitForReady = true;
    private Channel channel;

    private Builder(String target) {
      this.target = Objects.requireNonNull(target, "target");
    }

    /** PEM of the CA that signed the sidecar's certificate; turns TLS on. */
    public Builder tlsCa(Path caPem) {
      this.tlsCa = caPem;
      return this;
    }

    /** A client certificate and its key (PEM, PKCS#8) for a mutual-TLS listener. */
    public Builder tlsClientCertificate(Path certPem, Path keyPem) {
      this.tlsCert = Objects.requireNonNull(certPem, "certPem");
      this.tlsKey = Objects.requireNonNull(keyPem, "keyPem");
      return this;
    }

    /** The name to expect in the server certificate when the target does not name it. */
    public Builder tlsServerName(String name) {
      this.tlsServerName = name;
      return this;
    }

    /** The sidecar's API token, sent on every call as {@code authorization: Bearer ...}. */
    public Builder apiToken(String token) {
      this.apiToken = token;
      return this;
    }

    /** The per-call deadline (default 10 s); also bounds the wait for a first value. */
    public Builder defaultDeadline(Duration deadline) {
      if (deadline.isNegative() || deadline.isZero()) {
        throw new IllegalArgumentException("the default deadline must be positive");
      }
      this.deadline = deadline;
      return this;
    }

    /**
     * On (the default): a call made while the sidecar is not there waits for it, up to the
     * deadline. Off: it fails at once with UNAVAILABLE and the connection hint (for CLIs and
     * health checks).
     */
    public Builder waitForReady(boolean on) {
      this.waitForReady = on;
      return this;
    }

    /** A channel of your own (tests, a custom transport); the client will not close it. */
    public Builder channel(Channel channel) {
      this.channel = channel;
      return this;
    }

    public CredentialsClient build() {
      if (apiToken != null) {
        checkToken(apiToken);
      }
      if (channel != null) {
        if (tlsCa != null || tlsCert != null || tlsServerName != null) {
          throw new IllegalArgumentException("TLS options do not apply to a given channel");
        }
        return new CredentialsClient(this, null, channel);
      }
      if (tlsCa == null && (tlsCert != null || tlsServerName != null)) {
        throw new IllegalArgumentException(
            "a client certificate or server name needs TLS: give the CA (tlsCa) too");
      }
      if (target.startsWith("unix:") && !target.startsWith("unix:/")) {
        throw new IllegalArgumentException(
            "a unix: target needs an absolute path (unix:/run/pdsidecar.sock), not " + target);
      }
      ManagedChannelBuilder<?> builder = Grpc.newChannelBuilder(target, credentials());
      if (tlsServerName != null) {
        builder.overrideAuthority(tlsServerName);
      }
      if (target.startsWith("unix:")) {
        quietKeepaliveWarning();
      }
      ManagedChannel managed =
          builder.defaultServiceConfig(serviceConfig()).enableRetry().build();
      // Connect now, not at the first call: the handshake overlaps the caller's own start-up.
      managed.getState(true);
      return new CredentialsClient(this, managed, managed);
    }

    /**
     * Netty warns, once per connection, that a Unix socket has no SO_KEEPALIVE option (gRPC sets
     * it for every transport); the warning says nothing about the caller's setup.
     */
    private static void quietKeepaliveWarning() {
      BOOTSTRAP_LOGGER.setLevel(java.util.logging.Level.SEVERE);
    }

    private ChannelCredentials credentials() {
      if (tlsCa == null) {
        return InsecureChannelCredentials.create();
      }
      TlsChannelCredentials.Builder tlsBuilder = TlsChannelCredentials.newBuilder();
      try {
        tlsBuilder.trustManager(tlsCa.toFile());
      } catch (IOException e) {
        throw new IllegalArgumentException("TLS CA " + tlsCa + ": " + e.getMessage(), e);
      }
      if (tlsCert != null) {
        try {
          tlsBuilder.keyManager(tlsCert.toFile(), tlsKey.toFile());
        } catch (IOException e) {
          throw new IllegalArgumentException(
              "client certificate " + tlsCert + " / key " + tlsKey + ": " + e.getMessage(), e);
        }
      }
      return tlsBuilder.build();
    }
  }

  // gRPC's own retries: UNAVAILABLE (a restarting sidecar, a dropped connection) on the four
  // unary methods, three attempts inside each call's deadline; WatchCredentials is reopened by
  // RefreshableCredentials instead. Numbers are doubles, as grpc-java's JSON maps have them.
  static Map<String, ?> serviceConfig() {
    Map<String, ?> retryPolicy =
        Map.of(
            "maxAttempts", 3.0,
            "initialBackoff", "0.1s",
            "maxBackoff", "2s",
            "backoffMultiplier", 2.0,
            "retryableStatusCodes", List.of("UNAVAILABLE"));
    List<Map<String, String>> unary =
        List.of("GetCredentials", "ValidateAccount", "RefreshToken", "ListAccounts").stream()
            .map(method -> Map.of("service", SERVICE, "method", method))
            .toList();
    return Map.of("methodConfig", List.of(Map.of("name", unary, "retryPolicy", retryPolicy)));
  }

  private static void checkToken(String token) {
    for (int i = 0; i < token.length(); i++) {
      char c = token.charAt(i);
      if (c < 0x21 || c > 0x7e) {
        throw new IllegalArgumentException(
            "the API token must be printable ASCII without spaces (it is sent as a header)");
      }
    }
  }

  /** Sends {@code authorization: Bearer <token>}; its text form never shows the token. */
  private static final class BearerToken extends CallCredentials {
    private static final Metadata.Key<String> AUTHORIZATION =
        Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
    private final Metadata headers = new Metadata();

    BearerToken(String token) {
      headers.put(AUTHORIZATION, "Bearer " + token);
    }

    @Override
    public void applyRequestMetadata(
        RequestInfo requestInfo, Executor appExecutor, MetadataApplier applier) {
      applier.apply(headers);
    }

    @Override
    public String toString() {
      return "BearerToken{redacted}";
    }
  }

  private static java.util.concurrent.ThreadFactory daemon(String name) {
    return runnable -> {
      Thread thread = Executors.defaultThreadFactory().newThread(runnable);
      thread.setName(name);
      thread.setDaemon(true);
      return thread;
    };
  }

  // --- calls ---

  /** An account's credentials under Airweave field names. */
  public GetCredentialsResponse getCredentials(AccountRef ref) {
    return getCredentials(ref, "");
  }

  /**
   * GetCredentials telling the sidecar the source just answered 401 with {@code
   * rejectedAccessToken}: it will not answer with it from its cache.
   */
  public GetCredentialsResponse getCredentials(AccountRef ref, String rejectedAccessToken) {
    return getCredentials(ref, rejectedAccessToken, deadline);
  }

  private GetCredentialsResponse getCredentials(
      AccountRef ref, String rejectedAccessToken, Duration within) {
    return call(stub -> stub.getCredentials(ref.getRequest(rejectedAccessToken)), within);
  }

  /** Whether the account can serve its source; problems come back as data, not errors. */
  public ValidateAccountResponse validateAccount(AccountRef ref) {
    return call(stub -> stub.validateAccount(ref.validateRequest()), deadline);
  }

  /** Refreshes a connection's Pipedream API token ("" means {@code default}). */
  public RefreshTokenResponse refreshToken(String connection, boolean force) {
    RefreshTokenRequest request =
        RefreshTokenRequest.newBuilder().setConnection(connection).setForce(force).build();
    return call(stub -> stub.refreshToken(request), deadline);
  }

  /** One page of accounts; for all of them, {@link #accountPages(ListAccountsRequest)}. */
  public ListAccountsResponse listAccounts(ListAccountsRequest request) {
    return call(stub -> stub.listAccounts(request), deadline);
  }

  /** A project's accounts (default connection and environment), {@code pageSize} a page. */
  public AccountPages accountPages(String projectId, int pageSize) {
    return accountPages(
        ListAccountsRequest.newBuilder().setProjectId(projectId).setPageSize(pageSize).build());
  }

  /**
   * Every page of a listing, lazily, from {@code request}'s filters (connection, environment,
   * source, external user id, page size) and its page token (usually none).
   */
  public AccountPages accountPages(ListAccountsRequest request) {
    return new AccountPages(request, this::listAccounts);
  }

  /**
   * The raw WatchCredentials stream: the current value, then each new one. No deadline; ends by
   * throwing {@link CredentialsException} (UNAVAILABLE when the sidecar stops: open it again).
   * For a sync, {@link #refreshableCredentials(AccountRef)} does the reconnecting for you.
   */
  public Iterator<WatchCredentialsResponse> watchCredentials(AccountRef ref) {
    Iterator<WatchCredentialsResponse> stream = blocking.watchCredentials(ref.watchRequest());
    return new Iterator<>() {
      @Override
      public boolean hasNext() {
        try {
          return stream.hasNext();
        } catch (StatusRuntimeException e) {
          throw CredentialsException.from(e);
        }
      }

      @Override
      public WatchCredentialsResponse next() {
        try {
          return stream.next();
        } catch (StatusRuntimeException e) {
          throw CredentialsException.from(e);
        }
      }
    };
  }

  /** {@link #refreshableCredentials(AccountRef, Consumer)} without a listener. */
  public RefreshableCredentials refreshableCredentials(AccountRef ref) {
    return refreshableCredentials(ref, null);
  }

  /**
   * The account's credentials kept current by a WatchCredentials stream (see {@link
   * RefreshableCredentials}); returns once the first value is in, or throws {@link
   * CredentialsException} after the default deadline. {@code onUpdate} (may be null) is called
   * with each new value, the first included, on a gRPC thread: keep it short.
   */
  public RefreshableCredentials refreshableCredentials(
      AccountRef ref, Consumer<FrozenCredentials> onUpdate) {
    String name = ref.projectId() + "/" + ref.accountId() + "/" + ref.source();
    return RefreshableCredentials.start(
        name,
        observer -> async.watchCredentials(ref.watchRequest(), observer),
        (token, within) ->
            getCredentials(ref, token, within.compareTo(deadline) < 0 ? within : deadline),
        scheduler,
        deadline,
        onUpdate);
  }

  private <T> T call(Function<CredentialsServiceBlockingStub, T> rpc, Duration within) {
    long started = System.nanoTime();
    try {
      return rpc.apply(blocking.withDeadlineAfter(within.toNanos(), TimeUnit.NANOSECONDS));
    } catch (StatusRuntimeException e) {
      Duration waited = Duration.ofNanos(System.nanoTime() - started);
      throw explain(CredentialsException.from(e), waited);
    }
  }

  /** {@code failure}, or when the channel never connected, an error that says so and why. */
  private CredentialsException explain(CredentialsException failure, Duration waited) {
    if (owned == null || !failure.reason().isEmpty()) {
      return failure; // a reason means the sidecar answered
    }
    if (owned.getState(false) == ConnectivityState.READY) {
      return failure; // connected: the sidecar was slow, or the connection dropped mid-call
    }
    String lastError;
    if (failure.code() == Status.Code.UNAVAILABLE) {
      lastError = ConnectionHints.lastError(failure);
    } else if (failure.code() == Status.Code.DEADLINE_EXCEEDED) {
      lastError = probe();
      if (lastError == null) {
        return failure;
      }
    } else {
      return failure;
    }
    return failure.unconnected(
        ConnectionHints.notConnected(target, waited, lastError, tls, waitForReady));
  }

  /**
   * gRPC's last connection error ("" while still connecting), or null once connected: one
   * health check without wait-for-ready, which the service config does not retry, fails at once
   * with the error the channel keeps for the address.
   */
  private String probe() {
    try {
      ClientCalls.blockingUnaryCall(
          owned,
          HEALTH_CHECK,
          CallOptions.DEFAULT.withDeadlineAfter(PROBE_DEADLINE.toNanos(), TimeUnit.NANOSECONDS),
          new byte[0]);
      return null;
    } catch (StatusRuntimeException e) {
      CredentialsException probed = CredentialsException.from(e);
      return switch (probed.code()) {
        case UNAVAILABLE -> ConnectionHints.lastError(probed);
        case DEADLINE_EXCEEDED -> "";
        default -> null; // the sidecar answered (even UNIMPLEMENTED): connected
      };
    }
  }

  private static final MethodDescriptor.Marshaller<byte[]> BYTES =
      new MethodDescriptor.Marshaller<>() {
        @Override
        public InputStream stream(byte[] value) {
          return new ByteArrayInputStream(value);
        }

        @Override
        public byte[] parse(InputStream stream) {
          try {
            return stream.readAllBytes();
          } catch (IOException e) {
            throw Status.INTERNAL.withCause(e).asRuntimeException();
          }
        }
      };

  private static final MethodDescriptor<byte[], byte[]> HEALTH_CHECK =
      MethodDescriptor.<byte[], byte[]>newBuilder()
          .setType(MethodDescriptor.MethodType.UNARY)
          .setFullMethodName("grpc.health.v1.Health/Check")
          .setRequestMarshaller(BYTES)
          .setResponseMarshaller(BYTES)
          .build();

  /**
   * Waits, up to {@code timeout}, for the connection the client started when built: true once
   * it is up, false when the attempt failed or the time passed. Optional (calls connect by
   * themselves); for a start-up check that the sidecar is there, and to pay the transport's
   * one-time start (seconds for a cold JVM on a busy machine) before a deadline-bound call. A
   * client given its own channel answers true.
   */
  public boolean awaitConnection(Duration timeout) throws InterruptedException {
    if (owned == null) {
      return true;
    }
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      ConnectivityState state = owned.getState(true);
      if (state == ConnectivityState.READY) {
        return true;
      }
      long left = deadline - System.nanoTime();
      if (state == ConnectivityState.TRANSIENT_FAILURE
          || state == ConnectivityState.SHUTDOWN
          || left <= 0) {
        return false;
      }
      java.util.concurrent.CountDownLatch changed = new java.util.concurrent.CountDownLatch(1);
      owned.notifyWhenStateChanged(state, changed::countDown);
      changed.await(left, TimeUnit.NANOSECONDS);
    }
  }

  /** The target this client was built for. */
  public String target() {
    return target;
  }

  /**
   * Closes the channel (if the client made it) and the client's timer. Close the {@link
   * RefreshableCredentials} made from it first.
   */
  @Override
  public void close() {
    scheduler.shutdownNow();
    if (owned != null) {
      owned.shutdownNow();
      try {
        owned.awaitTermination(5, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }

  @Override
  public String toString() {
    return "CredentialsClient{" + target + (tls ? ", tls" : "") + "}";
  }

}
