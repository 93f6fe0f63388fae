package dev.pdsidecar.conformance;

import dev.pdsidecar.client.AccountRef;
import dev.pdsidecar.client.CredentialsClient;
import dev.pdsidecar.client.CredentialsException;
import dev.pdsidecar.client.FrozenCredentials;
import dev.pdsidecar.client.RefreshableCredentials;
import dev.pdsidecar.v1.AccountInfo;
import dev.pdsidecar.v1.GetCredentialsResponse;
import dev.pdsidecar.v1.ListAccountsRequest;
import dev.pdsidecar.v1.ListAccountsResponse;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

/**
 * The Java conformance driver: the scenarios of tests/conformance/ (client/SPEC.md, "Conformance
 * driver") on pdsidecar-client alone.
 *
 * <pre>
 *   java -jar pdsidecar-conformance.jar SCENARIO --target T [flags]
 * </pre>
 *
 * <p>Scenarios: get, list, error, hold, reject, bench. Each stdout line is one JSON object, the
 * last one the result; tokens appear only as fingerprints (the first 12 hex characters of their
 * SHA-256). Exit 0 whenever the scenario ran to its end, even if it observed an error (that is
 * data); 2 for bad flags. Diagnostics go to stderr.
 */
public final class ConformanceDriver {
  private static final String LANG = "java";
  private static final Set<String> SCENARIOS =
      Set.of("get", "list", "error", "hold", "reject", "bench");
  private static final Set<String> BOOLEANS = Set.of("wait-for-ready");
  private static final Set<String> REPEATED = Set.of("field", "account");
  private static final Set<String> VALUED =
      Set.of(
          "target", "token", "ca", "cert", "key", "server-name", "project", "environment",
          "external-user-id", "source", "deadline-ms", "page-size", "duration-s", "interval-ms",
          "source-api", "reject-timeout-ms", "reads");

  private ConformanceDriver() {}

  /** The command line, parsed: single flags, repeated flags, bare booleans. */
  private record Args(String scenario, Map<String, String> one, Map<String, List<String>> many) {
    String get(String name, String fallback) {
      return one.getOrDefault(name, fallback);
    }

    boolean has(String name) {
      return one.containsKey(name);
    }

    List<String> all(String name) {
      return many.getOrDefault(name, List.of());
    }

    long number(String name, long fallback) {
      return has(name) ? Long.parseLong(one.get(name)) : fallback;
    }

    double decimal(String name, double fallback) {
      return has(name) ? Double.parseDouble(one.get(name)) : fallback;
    }

    AccountRef ref(String account) {
      return AccountRef.of(get("project", ""), account, get("source", ""))
          .withEnvironment(get("environment", "production"))
          .withExternalUserId(get("external-user-id", ""))
          .withRequiredFields(all("field").toArray(String[]::new));
    }

    AccountRef ref() {
      List<String> accounts = all("account");
      return ref(accounts.isEmpty() ? "" : accounts.get(0));
    }
  }

  private static final class UsageException extends Exception {
    UsageException(String message) {
      super(message);
    }
  }

  private static Args parse(String[] argv) throws UsageException {
    if (argv.length == 0 || !SCENARIOS.contains(argv[0])) {
      throw new UsageException("the first argument is the scenario, one of " + SCENARIOS);
    }
    Map<String, String> one = new LinkedHashMap<>();
    Map<String, List<String>> many = new LinkedHashMap<>();
    for (int i = 1; i < argv.length; i++) {
      if (!argv[i].startsWith("--")) {
        throw new UsageException("unexpected argument " + argv[i]);
      }
      String name = argv[i].substring(2);
      if (BOOLEANS.contains(name)) {
        one.put(name, "true");
        continue;
      }
      if (!VALUED.contains(name) && !REPEATED.contains(name)) {
        throw new UsageException("unknown flag --" + name);
      }
      if (++i >= argv.length) {
        throw new UsageException("flag --" + name + " needs a value");
      }
      if (REPEATED.contains(name)) {
        many.computeIfAbsent(name, k -> new ArrayList<>()).add(argv[i]);
      } else {
        one.put(name, argv[i]);
      }
    }
    if (!one.containsKey("target")) {
      throw new UsageException("--target is required");
    }
    return new Args(argv[0], one, many);
  }

  private static CredentialsClient client(Args args) {
    CredentialsClient.Builder builder =
        CredentialsClient.builder(args.get("target", ""))
            .defaultDeadline(Duration.ofMillis(args.number("deadline-ms", 5000)))
            .waitForReady(args.has("wait-for-ready"));
    if (args.has("token")) {
      builder.apiToken(args.get("token", ""));
    }
    if (args.has("ca")) {
      builder.tlsCa(Path.of(args.get("ca", "")));
    }
    if (args.has("cert") || args.has("key")) {
      builder.tlsClientCertificate(Path.of(args.get("cert", "")), Path.of(args.get("key", "")));
    }
    if (args.has("server-name")) {
      builder.tlsServerName(args.get("server-name", ""));
    }
    return builder.build();
  }

  static String fp(String token) {
    try {
      byte[] digest =
          MessageDigest.getInstance("SHA-256").digest(token.getBytes(StandardCharsets.UTF_8));
      return HexFormat.of().formatHex(digest).substring(0, 12);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  private static void emit(Map<String, ?> line) {
    System.out.println(Json.write(line));
    System.out.flush();
  }

  private static Map<String, Object> errorOf(CredentialsException e, long startedNanos) {
    Map<String, Object> error = new LinkedHashMap<>();
    error.put("code", e.code().name());
    error.put("reason", e.reason().isEmpty() ? null : e.reason());
    error.put("retry_after_ms", e.retryAfter().map(Duration::toMillis).orElse(null));
    error.put(
        "violations",
        e.violations().stream()
            .map(v -> Map.of("field", v.field(), "description", v.description()))
            .collect(Collectors.toList()));
    error.put("hint", e.hint().orElse(null));
    error.put("elapsed_ms", TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - startedNanos));
    return error;
  }

  // --- scenarios ---

  private static Map<String, Object> get(CredentialsClient client, Args args) {
    GetCredentialsResponse answer = client.getCredentials(args.ref());
    Map<String, Object> result = new LinkedHashMap<>();
    result.put("fields", new ArrayList<>(new TreeSet<>(answer.getCredentialsMap().keySet())));
    result.put("token_fp", fp(answer.getCredentialsOrDefault("access_token", "")));
    return result;
  }

  private static Map<String, Object> list(CredentialsClient client, Args args) {
    ListAccountsRequest request =
        ListAccountsRequest.newBuilder()
            .setProjectId(args.get("project", ""))
            .setEnvironment(
                args.get("environment", "production").equals("development")
                    ? dev.pdsidecar.v1.Environment.ENVIRONMENT_DEVELOPMENT
                    : dev.pdsidecar.v1.Environment.ENVIRONMENT_PRODUCTION)
            .setSource(args.get("source", ""))
            .setExternalUserId(args.get("external-user-id", ""))
            .setPageSize((int) args.number("page-size", 0))
            .build();
    List<String> ids = new ArrayList<>();
    int pages = 0;
    for (ListAccountsResponse page : client.accountPages(request)) {
      pages++;
      for (AccountInfo account : page.getAccountsList()) {
        ids.add(account.getAccountId());
      }
    }
    Map<String, Object> result = new LinkedHashMap<>();
    result.put("count", ids.size());
    result.put("pages", pages);
    result.put("ids_fp", fp(String.join(",", new TreeSet<>(ids))));
    return result;
  }

  private static Map<String, Object> hold(CredentialsClient client, Args args) throws Exception {
    long reads = 0, readErrors = 0, sourceOk = 0, source401 = 0, rejects = 0;
    Set<String> tokens = new HashSet<>();
    String sourceApi = args.get("source-api", null);
    HttpClient http = sourceApi == null ? null : HttpClient.newHttpClient();
    Duration rejectTimeout = Duration.ofMillis(args.number("reject-timeout-ms", 10000));
    long interval = TimeUnit.MILLISECONDS.toNanos(args.number("interval-ms", 20));
    try (RefreshableCredentials creds = client.refreshableCredentials(args.ref())) {
      emit(Map.of("event", "ready"));
      long end = System.nanoTime() + (long) (args.decimal("duration-s", 20) * 1e9);
      long nextAt = System.nanoTime();
      while (System.nanoTime() < end) {
        reads++;
        try {
          String token = creds.accessToken();
          tokens.add(token);
          if (http != null) {
            if (sourceStatus(http, sourceApi, token) == 200) {
              sourceOk++;
            } else {
              source401++;
              rejects++;
              try {
                creds.reject(token, rejectTimeout);
              } catch (CredentialsException e) {
                System.err.println("reject failed: " + e.getMessage());
              }
            }
          }
        } catch (CredentialsException e) {
          readErrors++;
          System.err.println("read error: " + e.getMessage());
        }
        nextAt += interval;
        long sleep = nextAt - System.nanoTime();
        if (sleep > 0) {
          TimeUnit.NANOSECONDS.sleep(sleep);
        }
      }
    }
    Map<String, Object> result = new LinkedHashMap<>();
    result.put("reads", reads);
    result.put("read_errors", readErrors);
    result.put("source_ok", sourceOk);
    result.put("source_401", source401);
    result.put("rejects", rejects);
    result.put("distinct_tokens", tokens.size());
    return result;
  }

  private static int sourceStatus(HttpClient http, String url, String token) throws Exception {
    HttpRequest request =
        HttpRequest.newBuilder(URI.create(url))
            .header("Authorization", "Bearer " + token)
            .timeout(Duration.ofSeconds(5))
            .build();
    return http.send(request, HttpResponse.BodyHandlers.discarding()).statusCode();
  }

  private static Map<String, Object> reject(CredentialsClient client, Args args)
      throws Exception {
    try (RefreshableCredentials creds = client.refreshableCredentials(args.ref())) {
      String before = creds.accessToken();
      emit(orderedOf("event", "ready", "token_fp", fp(before)));
      new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)).readLine();
      long started = System.nanoTime();
      String after =
          creds.reject(before, Duration.ofMillis(args.number("reject-timeout-ms", 10000)))
              .accessToken();
      Map<String, Object> result = new LinkedHashMap<>();
      result.put("before_fp", fp(before));
      result.put("after_fp", fp(after));
      result.put("changed", !after.equals(before));
      result.put("elapsed_ms", TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started));
      return result;
    }
  }

  /**
   * One object per --account: the cost of a read (after a JIT warm-up), the heap per object,
   * and when each object first held the token the harness rotated to (its change signal,
   * {@code nextUpdate()}).
   */
  private static Map<String, Object> bench(CredentialsClient client, Args args) throws Exception {
    List<String> accounts = args.all("account");
    // The first object also pays for the connection and gRPC's own start (megabytes, once):
    // with more than one, the heap is measured from after the first, over the others.
    Map<String, RefreshableCredentials> held = new LinkedHashMap<>();
    long before = heapAfterGc();
    int measured = accounts.size();
    for (String account : accounts) {
      held.put(account, client.refreshableCredentials(args.ref(account)));
      if (held.size() == 1 && accounts.size() > 1) {
        before = heapAfterGc();
        measured = accounts.size() - 1;
      }
    }
    long perObject = (heapAfterGc() - before) / Math.max(1, measured);
    RefreshableCredentials first = held.values().iterator().next();
    long reads = args.number("reads", 1_000_000);
    long sink = 0;
    for (long i = 0; i < reads / 10; i++) { // warm-up: let the JIT compile the read
      sink += first.accessToken().length();
    }
    long started = System.nanoTime();
    for (long i = 0; i < reads; i++) {
      sink += first.accessToken().length();
    }
    double readNs = (System.nanoTime() - started) / (double) reads;
    System.err.println("bench: read checksum " + sink);
    Map<String, Long> changedAt = new ConcurrentHashMap<>();
    CountDownLatch allChanged = new CountDownLatch(held.size());
    for (Map.Entry<String, RefreshableCredentials> entry : held.entrySet()) {
      entry.getValue().nextUpdate()
          .thenAccept(
              (FrozenCredentials value) -> {
                changedAt.put(entry.getKey(), System.currentTimeMillis());
                allChanged.countDown();
              });
    }
    emit(orderedOf("event", "ready", "read_ns", readNs, "bytes_per_object", perObject));
    allChanged.await((long) (args.decimal("duration-s", 20) * 1000), TimeUnit.MILLISECONDS);
    held.values().forEach(RefreshableCredentials::close);
    return orderedOf(
        "read_ns", readNs, "bytes_per_object", perObject, "changed_at_ms",
        new LinkedHashMap<>(changedAt));
  }

  private static long heapAfterGc() throws InterruptedException {
    for (int i = 0; i < 3; i++) {
      System.gc();
      Thread.sleep(50);
    }
    return ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
  }

  private static Map<String, Object> orderedOf(Object... pairs) {
    Map<String, Object> map = new LinkedHashMap<>();
    for (int i = 0; i < pairs.length; i += 2) {
      map.put((String) pairs[i], pairs[i + 1]);
    }
    return map;
  }

  private static Map<String, Object> run(String scenario, CredentialsClient client, Args args)
      throws Exception {
    return switch (scenario) {
      case "get", "error" -> get(client, args);
      case "list" -> list(client, args);
      case "hold" -> hold(client, args);
      case "reject" -> reject(client, args);
      case "bench" -> bench(client, args);
      default -> throw new IllegalStateException(scenario);
    };
  }

  public static void main(String[] argv) throws Exception {
    Args args;
    CredentialsClient client;
    try {
      args = parse(argv);
      client = client(args);
    } catch (UsageException | IllegalArgumentException e) {
      System.err.println("pdsidecar-conformance: " + e.getMessage());
      System.exit(2);
      return;
    }
    Map<String, Object> result = new LinkedHashMap<>();
    result.put("lang", LANG);
    result.put("scenario", args.scenario());
    result.put("ok", true);
    result.put("error", null);
    // A cold JVM starts its transport (class loading, Netty) in seconds on a busy machine: let
    // the client's first connection attempt settle (up or refused) before any call is timed.
    client.awaitConnection(Duration.ofMillis(args.number("deadline-ms", 5000)));
    long started = System.nanoTime();
    try (client) {
      result.putAll(run(args.scenario(), client, args));
    } catch (CredentialsException e) {
      result.put("ok", false);
      result.put("error", errorOf(e, started));
    }
    emit(result);
    System.exit(0);
  }
}
