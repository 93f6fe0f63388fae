package dev.pdsidecar.examples;

import dev.pdsidecar.client.AccountRef;
import dev.pdsidecar.client.CredentialsClient;
import dev.pdsidecar.client.CredentialsException;
import dev.pdsidecar.client.FrozenCredentials;
import dev.pdsidecar.client.RefreshableCredentials;
import dev.pdsidecar.v1.GetCredentialsResponse;
import dev.pdsidecar.v1.Problem;
import dev.pdsidecar.v1.RefreshTokenResponse;
import dev.pdsidecar.v1.ValidateAccountResponse;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeSet;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import java.util.stream.Collectors;

/**
 * Calls the pdsidecar CredentialsService with the pdsidecar-client library and prints one line
 * per answer, in the format every language's example shares:
 *
 * <pre>
 *   credentials access_token=&lt;token&gt; fields=&lt;names,...&gt;
 *   valid=&lt;true|false&gt; problems=&lt;REASON,...&gt;
 *   refreshed=&lt;true|false&gt; expires_at=&lt;RFC 3339, UTC&gt;
 *   watch access_token=&lt;token&gt; expires_at=&lt;RFC 3339, UTC&gt;
 *   error code=&lt;GRPC_CODE&gt; reason=&lt;ErrorInfo reason or -&gt;
 * </pre>
 *
 * <p>A failed call throws {@link CredentialsException}; one with a retry delay (RetryInfo) is
 * called again after it, up to --attempts times: the library leaves that to the caller.
 *
 * <p>watch holds a {@link RefreshableCredentials} and prints a line for its first value and for
 * every rotation after it (--count N: stop after N lines); the object reconnects by itself.
 *
 * <pre>
 *   java -jar pdsidecar-example.jar [--target T] get      --project P --account A --source S
 *   java -jar pdsidecar-example.jar [--target T] validate --project P --account A --source S
 *   java -jar pdsidecar-example.jar [--target T] refresh  [--connection C] [--force]
 *   java -jar pdsidecar-example.jar [--target T] watch    --project P --account A --source S [--count N]
 * </pre>
 *
 * Flags fall back to PDSIDECAR_TARGET (default 127.0.0.1:50051; {@code unix:/path} for a
 * socket), PDSIDECAR_PROJECT, PDSIDECAR_ACCOUNT, PDSIDECAR_SOURCE and PDSIDECAR_CONNECTION.
 */
public final class PdsidecarExample {
  private static final Duration MAX_RETRY_DELAY = Duration.ofSeconds(30);
  private static final String USAGE =
      "usage: pdsidecar-example [--target HOST:PORT|unix:/PATH] {get|validate|refresh|watch} [flags]";
  private static final String HELP =
      USAGE
          + "\ncommands: get, validate, refresh, watch; flags:\n"
          + "  --target T           the sidecar (default: $PDSIDECAR_TARGET, else 127.0.0.1:50051)\n"
          + "  --project ID         Pipedream project id, proj_... ($PDSIDECAR_PROJECT)\n"
          + "  --account ID         connected account id, apn_... ($PDSIDECAR_ACCOUNT)\n"
          + "  --source NAME        source short name, e.g. notion ($PDSIDECAR_SOURCE)\n"
          + "  --connection NAME    connection name (default: $PDSIDECAR_CONNECTION, else default)\n"
          + "  --force              refresh: refresh even when not yet due\n"
          + "  --attempts N         attempts per call when the sidecar sends RetryInfo (default 3)\n"
          + "  --count N            watch: stop after N values (default 0: never)\n"
          + "  -h, --help           this help";

  private PdsidecarExample() {}

  private static final class UsageException extends Exception {
    UsageException(String message) {
      super(message);
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

  /** Runs one call, and again after RetryInfo's delay when the sidecar sends one. */
  private static <T> T withRetries(int attempts, Supplier<T> call) throws InterruptedException {
    for (int attempt = 1; ; attempt++) {
      try {
        return call.get();
      } catch (CredentialsException e) {
        if (e.retryAfter().isEmpty() || attempt >= attempts) {
          throw e;
        }
        Duration delay = e.retryAfter().get();
        if (delay.compareTo(MAX_RETRY_DELAY) > 0) {
          delay = MAX_RETRY_DELAY;
        }
        System.err.printf(
            Locale.ROOT,
            "retrying in %.3fs: code=%s reason=%s (attempt %d of %d)%n",
            delay.toMillis() / 1000.0, e.code(), e.reason(), attempt, attempts);
        Thread.sleep(delay.toMillis());
      }
    }
  }

  private static String rfc3339(Instant at) {
    return at == null ? "" : Instant.ofEpochSecond(at.getEpochSecond()).toString();
  }

  private static void run(Map<String, String> o, CredentialsClient client)
      throws UsageException, InterruptedException {
    int attempts = Math.max(1, Integer.parseInt(o.get("attempts")));
    AccountRef ref =
        AccountRef.of(o.get("project"), o.get("account"), o.get("source"))
            .withConnection(o.get("connection"));
    switch (o.get("command")) {
      case "get" -> {
        GetCredentialsResponse resp = withRetries(attempts, () -> client.getCredentials(ref));
        String fields = String.join(",", new TreeSet<>(resp.getCredentialsMap().keySet()));
        System.out.printf(
            "credentials access_token=%s fields=%s%n",
            resp.getCredentialsOrDefault("access_token", ""), fields);
      }
      case "validate" -> {
        ValidateAccountResponse resp = withRetries(attempts, () -> client.validateAccount(ref));
        String problems =
            resp.getProblemsList().stream()
                .map(Problem::getReason)
                .map(r -> r.name().replaceFirst("^REASON_", ""))
                .collect(Collectors.joining(","));
        System.out.printf("valid=%b problems=%s%n", resp.getValid(), problems);
      }
      case "refresh" -> {
        boolean force = Boolean.parseBoolean(o.get("force"));
        RefreshTokenResponse resp =
            withRetries(attempts, () -> client.refreshToken(o.get("connection"), force));
        Instant expires =
            resp.hasExpiresAt() ? Instant.ofEpochSecond(resp.getExpiresAt().getSeconds()) : null;
        System.out.printf("refreshed=%b expires_at=%s%n", resp.getRefreshed(), rfc3339(expires));
      }
      case "watch" -> watch(client, ref, Integer.parseInt(o.get("count")));
      default -> throw new UsageException("unknown command \"" + o.get("command") + "\"");
    }
  }

  /**
   * Prints every value the always-current object holds, as the sidecar pushes it; an account
   * problem ending the watch is thrown by the next read.
   */
  private static void watch(CredentialsClient client, AccountRef ref, int count)
      throws InterruptedException {
    BlockingQueue<FrozenCredentials> values = new LinkedBlockingQueue<>();
    try (RefreshableCredentials creds = client.refreshableCredentials(ref, values::add)) {
      for (int printed = 0; count == 0 || printed < count; ) {
        FrozenCredentials value = values.poll(1, TimeUnit.SECONDS);
        if (value == null) {
          creds.frozenCredentials(); // throws the error that ended the watch, if one did
          continue;
        }
        System.out.printf(
            "watch access_token=%s expires_at=%s%n",
            value.accessToken(), rfc3339(value.expiresAt().orElse(null)));
        System.out.flush();
        printed++;
      }
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
    int exit = 0;
    // A command-line tool fails fast when the sidecar is not there (wait-for-ready off).
    try (CredentialsClient client =
        CredentialsClient.builder(o.get("target")).waitForReady(false).build()) {
      run(o, client);
    } catch (CredentialsException e) {
      System.out.printf(
          "error code=%s reason=%s%n", e.code(), e.reason().isEmpty() ? "-" : e.reason());
      System.err.println("message: " + e.getMessage());
      e.violations()
          .forEach(v -> System.err.println("violation: " + v.field() + ": " + v.description()));
      exit = 1;
    } catch (UsageException e) {
      System.err.println("pdsidecar-example: " + e.getMessage() + "\n" + USAGE);
      exit = 2;
    }
    System.exit(exit);
  }
}
