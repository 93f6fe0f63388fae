package dev.pdsidecar.examples;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Timestamp;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import dev.pdsidecar.v1.AccountRef;
import dev.pdsidecar.v1.CredentialsServiceGrpc;
import dev.pdsidecar.v1.CredentialsServiceGrpc.CredentialsServiceBlockingStub;
import dev.pdsidecar.v1.GetCredentialsRequest;
import dev.pdsidecar.v1.GetCredentialsResponse;
import dev.pdsidecar.v1.Problem;
import dev.pdsidecar.v1.RefreshTokenRequest;
import dev.pdsidecar.v1.RefreshTokenResponse;
import dev.pdsidecar.v1.ValidateAccountRequest;
import dev.pdsidecar.v1.ValidateAccountResponse;
import dev.pdsidecar.v1.WatchCredentialsRequest;
import dev.pdsidecar.v1.WatchCredentialsResponse;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.stream.Collectors;

/**
 * Calls the pdsidecar CredentialsService from Java and prints one line per answer, in the format
 * every language's example shares:
 *
 * <pre>
 *   credentials access_token=&lt;token&gt; fields=&lt;names,...&gt;
 *   valid=&lt;true|false&gt; problems=&lt;REASON,...&gt;
 *   refreshed=&lt;true|false&gt; expires_at=&lt;RFC 3339, UTC&gt;
 *   watch access_token=&lt;token&gt; expires_at=&lt;RFC 3339, UTC&gt;
 *   error code=&lt;GRPC_CODE&gt; reason=&lt;ErrorInfo reason or -&gt;
 * </pre>
 *
 * <p>A failed call's ErrorInfo reason and RetryInfo come from the google.rpc.Status in the
 * grpc-status-details-bin trailer; a call with RetryInfo is retried after that delay, up to
 * --attempts times. Calls without RetryInfo are not retried.
 *
 * <p>watch opens WatchCredentials and prints a line for the first value and for every rotation
 * after it (--count N: stop after N lines). A stream ending UNAVAILABLE (the sidecar restarting)
 * is opened again; any other error ends it.
 *
 * <pre>
 *   java -jar pdsidecar-example.jar [--target HOST:PORT] get      --project P --account A --source S
 *   java -jar pdsidecar-example.jar [--target HOST:PORT] validate --project P --account A --source S
 *   java -jar pdsidecar-example.jar [--target HOST:PORT] refresh  [--connection C] [--force]
 *   java -jar pdsidecar-example.jar [--target HOST:PORT] watch    --project P --account A --source S [--count N]
 * </pre>
 *
 * Flags fall back to PDSIDECAR_TARGET (default 127.0.0.1:50051), PDSIDECAR_PROJECT,
 * PDSIDECAR_ACCOUNT, PDSIDECAR_SOURCE and PDSIDECAR_CONNECTION.
 */
public final class PdsidecarExample {
  private static final long CALL_TIMEOUT_SECONDS = 10;
  private static final Duration MAX_RETRY_DELAY = Duration.ofSeconds(30);
  private static final String USAGE =
      "usage: pdsidecar-example [--target HOST:PORT] {get|validate|refresh|watch} [flags]";

  private PdsidecarExample() {}

  private static final String HELP =
      USAGE
          + "\ncommands: get, validate, refresh, watch; flags:\n"
          + "  --target HOST:PORT   the sidecar (default: $PDSIDECAR_TARGET, else 127.0.0.1:50051)\n"
          + "  --project ID         Pipedream project id, proj_... ($PDSIDECAR_PROJECT)\n"
          + "  --account ID         connected account id, apn_... ($PDSIDECAR_ACCOUNT)\n"
          + "  --source NAME        source short name, e.g. notion ($PDSIDECAR_SOURCE)\n"
          + "  --connection NAME    connection name (default: $PDSIDECAR_CONNECTION, else default)\n"
          + "  --force              refresh: refresh even when not yet due\n"
          + "  --attempts N         attempts per call when the sidecar sends RetryInfo (default 3)\n"
          + "  --count N            watch: stop after N values (default 0: never)\n"
          + "  -h, --help           this help";

  private static final class UsageException extends Exception {
    UsageException(String message) {
      super(message);
    }
  }

  /** What a failed call says: code, ErrorInfo reason, RetryInfo delay, BadRequest violations. */
  record CallError(Status.Code code, String reason, Duration retryDelay, List<String> violations) {
    static CallError of(StatusRuntimeException e) {
      String reason = "-";
      Duration retryDelay = null;
      List<String> violations = new ArrayList<>();
      com.google.rpc.Status status = StatusProto.fromThrowable(e);
      if (status != null) {
        try {
          for (Any detail : status.getDetailsList()) {
            if (detail.is(ErrorInfo.class)) {
              reason = detail.unpack(ErrorInfo.class).getReason();
            } else if (detail.is(RetryInfo.class)) {
              com.google.protobuf.Duration d = detail.unpack(RetryInfo.class).getRetryDelay();
              retryDelay = Duration.ofSeconds(d.getSeconds(), d.getNanos());
            } else if (detail.is(BadRequest.class)) {
              for (BadRequest.FieldViolation v :
                  detail.unpack(BadRequest.class).getFieldViolationsList()) {
                violations.add(v.getField() + ": " + v.getDescription());
              }
            }
          }
        } catch (InvalidProtocolBufferException bad) {
          System.err.println("unreadable error details: " + bad.getMessage());
        }
      }
      return new CallError(e.getStatus().getCode(), reason, retryDelay, violations);
    }
  }

  private static Map<String, String> parse(String[] args) throws UsageException {
    Map<String, String> o = new HashMap<>();
    o.put("target", env("PDSIDECAR_TARGET", "127.0.0.1:50051"));
    o.put("project", env("PDSIDECAR_PROJECT", ""));
    o.put("account", env("PDSIDECAR_ACCOUNT", ""));
    o.put("source", env("PDSIDECAR_SOURCE", ""));
    o.put("connection", env("PDSIDECAR_CONNECTION", "default"));
    o.put("attempts", "3");
    o.put("count", "0");
    o.put("force", "false");
    List<String> positionals = new ArrayList<>();
    for (int i = 0; i < args.length; i++) {
      String arg = args[i];
      if (!arg.startsWith("--")) {
        positionals.add(arg);
        continue;
      }
      String name = arg.substring(2);
      String value = null;
      int eq = name.indexOf('=');
      if (eq >= 0) {
        value = name.substring(eq + 1);
        name = name.substring(0, eq);
      }
      if (!o.containsKey(name)) {
        throw new UsageException("unknown flag --" + name);
      }
      if (name.equals("force")) {
        o.put(name, value == null ? "true" : value);
        continue;
      }
      if (value == null) {
        if (++i >= args.length) {
          throw new UsageException("flag --" + name + " needs a value");
        }
        value = args[i];
      }
      o.put(name, value);
    }
    if (positionals.size() != 1) {
      throw new UsageException(positionals.isEmpty() ? "missing command" : "one command expected");
    }
    o.put("command", positionals.get(0));
    return o;
  }

  private static String env(String name, String fallback) {
    String value = System.getenv(name);
    return value == null || value.isEmpty() ? fallback : value;
  }

  /** Runs one RPC with a deadline, retrying after RetryInfo's delay. */
  private static <T> T call(
      CredentialsServiceBlockingStub stub,
      int attempts,
      Function<CredentialsServiceBlockingStub, T> rpc)
      throws InterruptedException {
    for (int attempt = 1; ; attempt++) {
      try {
        return rpc.apply(stub.withDeadlineAfter(CALL_TIMEOUT_SECONDS, TimeUnit.SECONDS));
      } catch (StatusRuntimeException e) {
        CallError err = CallError.of(e);
        if (err.retryDelay() == null || attempt >= attempts) {
          throw e;
        }
        Duration delay =
            err.retryDelay().compareTo(MAX_RETRY_DELAY) > 0 ? MAX_RETRY_DELAY : err.retryDelay();
        System.err.printf(
            Locale.ROOT,
            "retrying in %.3fs: code=%s reason=%s (attempt %d of %d)%n",
            delay.toMillis() / 1000.0, err.code(), err.reason(), attempt, attempts);
        Thread.sleep(delay.toMillis());
      }
    }
  }

  private static String rfc3339(boolean present, Timestamp ts) {
    return present ? Instant.ofEpochSecond(ts.getSeconds()).toString() : "";
  }

  private static void run(Map<String, String> o, CredentialsServiceBlockingStub stub)
      throws UsageException, InterruptedException {
    int attempts = Math.max(1, Integer.parseInt(o.get("attempts")));
    AccountRef account =
        AccountRef.newBuilder()
            .setConnection(o.get("connection"))
            .setProjectId(o.get("project"))
            .setAccountId(o.get("account"))
            .build();
    switch (o.get("command")) {
      case "get" -> {
        GetCredentialsRequest request =
            GetCredentialsRequest.newBuilder()
                .setAccount(account)
                .setSource(o.get("source"))
                .build();
        GetCredentialsResponse resp = call(stub, attempts, s -> s.getCredentials(request));
        String fields = String.join(",", new TreeSet<>(resp.getCredentialsMap().keySet()));
        System.out.printf(
            "credentials access_token=%s fields=%s%n",
            resp.getCredentialsOrDefault("access_token", ""), fields);
      }
      case "validate" -> {
        ValidateAccountRequest request =
            ValidateAccountRequest.newBuilder()
                .setAccount(account)
                .setSource(o.get("source"))
                .build();
        ValidateAccountResponse resp = call(stub, attempts, s -> s.validateAccount(request));
        String problems =
            resp.getProblemsList().stream()
                .map(Problem::getReason)
                .map(r -> r.name().replaceFirst("^REASON_", ""))
                .collect(Collectors.joining(","));
        System.out.printf("valid=%b problems=%s%n", resp.getValid(), problems);
      }
      case "refresh" -> {
        RefreshTokenRequest request =
            RefreshTokenRequest.newBuilder()
                .setConnection(o.get("connection"))
                .setForce(Boolean.parseBoolean(o.get("force")))
                .build();
        RefreshTokenResponse resp = call(stub, attempts, s -> s.refreshToken(request));
        System.out.printf(
            "refreshed=%b expires_at=%s%n",
            resp.getRefreshed(), rfc3339(resp.hasExpiresAt(), resp.getExpiresAt()));
      }
      case "watch" -> watch(stub, account, o.get("source"), Integer.parseInt(o.get("count")));
      default -> throw new UsageException("unknown command \"" + o.get("command") + "\"");
    }
  }

  /**
   * Prints every value of the account's credentials as the sidecar pushes it. The stream has no
   * deadline: it lives as long as the sync does.
   */
  private static void watch(
      CredentialsServiceBlockingStub stub, AccountRef account, String source, int count)
      throws InterruptedException {
    WatchCredentialsRequest request =
        WatchCredentialsRequest.newBuilder().setAccount(account).setSource(source).build();
    int printed = 0;
    while (true) {
      try {
        Iterator<WatchCredentialsResponse> stream =
            stub.withWaitForReady().watchCredentials(request);
        while (stream.hasNext()) {
          WatchCredentialsResponse resp = stream.next();
          System.out.printf(
              "watch access_token=%s expires_at=%s%n",
              resp.getCredentialsOrDefault("access_token", ""),
              rfc3339(resp.hasExpiresAt(), resp.getExpiresAt()));
          System.out.flush();
          if (count > 0 && ++printed >= count) {
            return;
          }
        }
      } catch (StatusRuntimeException e) {
        if (e.getStatus().getCode() != Status.Code.UNAVAILABLE) {
          throw e;
        }
        System.err.println(
            "stream ended UNAVAILABLE (reason=" + CallError.of(e).reason() + "); reconnecting");
      }
      Thread.sleep(100);
    }
  }

  public static void main(String[] args) throws InterruptedException {
    if (List.of(args).contains("--help") || List.of(args).contains("-h")) {
      System.out.println(HELP);
      return;
    }
    Map<String, String> o;
    try {
      o = parse(args);
    } catch (UsageException e) {
      System.err.println("pdsidecar-example: " + e.getMessage() + "\n" + USAGE);
      System.exit(2);
      return;
    }
    ManagedChannel channel =
        Grpc.newChannelBuilder(o.get("target"), InsecureChannelCredentials.create()).build();
    int exit = 0;
    try {
      run(o, CredentialsServiceGrpc.newBlockingStub(channel));
    } catch (StatusRuntimeException e) {
      CallError err = CallError.of(e);
      System.out.printf("error code=%s reason=%s%n", err.code(), err.reason());
      System.err.println("message: " + e.getStatus().getDescription());
      // A call that never reached the sidecar says only "io exception": the cause says why
      // (connection refused, TLS handshake, unknown host).
      for (Throwable cause = e.getCause(); cause != null; cause = cause.getCause()) {
        System.err.println("cause: " + cause);
      }
      err.violations().forEach(v -> System.err.println("violation: " + v));
      exit = 1;
    } catch (UsageException e) {
      System.err.println("pdsidecar-example: " + e.getMessage() + "\n" + USAGE);
      exit = 2;
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    System.exit(exit);
  }
}
