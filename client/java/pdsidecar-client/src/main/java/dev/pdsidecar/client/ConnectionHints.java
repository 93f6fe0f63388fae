package dev.pdsidecar.client;

import java.time.Duration;
import java.util.LinkedHashSet;
import java.util.Locale;
import java.util.Set;

/**
 * Why a call never reached the sidecar, in words a person can act on: the target, gRPC's last
 * connection error (the exception chain grpc-java attaches to an UNAVAILABLE status) and its
 * likely cause.
 */
final class ConnectionHints {
  private ConnectionHints() {}

  /** gRPC's connection error: the messages along the cause chain, or the status message. */
  static String lastError(CredentialsException failure) {
    Set<String> parts = new LinkedHashSet<>();
    for (Throwable t = failure.getCause(); t != null && parts.size() < 4; t = t.getCause()) {
      String text = t.getMessage();
      parts.add(t.getClass().getSimpleName() + (text == null ? "" : ": " + text));
    }
    if (parts.isEmpty()) {
      return failure.statusMessage();
    }
    return String.join(" <- ", parts);
  }

  /** The likely cause of a connection error; "" when it says nothing we recognise. */
  static String cause(String lastError, boolean tls) {
    String text = lastError.toLowerCase(Locale.ROOT);
    if (text.contains("connection refused")) {
      return "nothing listens there: is 'pdsidecar serve' running on this address";
    }
    if (text.contains("no such file")) {
      return "no Unix socket at that path: is 'pdsidecar serve' listening there";
    }
    if (text.contains("permission denied")) {
      return "the socket's file mode keeps this user out (see serve --socket-mode)";
    }
    if (text.contains("http/1") || text.contains("not settings")) {
      return "an HTTP/1 server answered (the metrics port?), not the sidecar's gRPC listener";
    }
    if (text.contains("pkix") || text.contains("certification path")) {
      return "the server certificate is not signed by the CA given as the TLS CA (--ca)";
    }
    if (text.contains("subject alternative") || text.contains("no name matching")) {
      return "the server certificate does not name the target: set the server name (--server-name)";
    }
    if (text.contains("notsslrecord") || text.contains("not an ssl/tls record")) {
      return "the TLS handshake failed: the listener may be plaintext (then drop the TLS options)";
    }
    if (tls && (text.contains("certificate_required") || text.contains("bad_certificate"))) {
      return "the listener wants a client certificate signed by its --tls-client-ca"
          + " (the client certificate and key, --cert/--key)";
    }
    boolean closed =
        text.contains("closed") || text.contains("reset") || text.contains("handshake");
    if (closed && !tls) {
      return "the server closed the connection at once: a TLS listener does that to plaintext"
          + " clients; pass its CA (--ca)";
    }
    if (closed) {
      return "the server closed the connection during the TLS handshake: a listener started"
          + " with --tls-client-ca wants a client certificate (--cert/--key) signed by that CA";
    }
    return "";
  }

  /** The message of a call that failed because the channel never connected. */
  static String notConnected(
      String target, Duration waited, String lastError, boolean tls, boolean waitForReady) {
    String found =
        lastError.isEmpty() ? "none yet (still connecting: no answer from the address)" : lastError;
    StringBuilder text = new StringBuilder();
    if (waitForReady) {
      text.append("waited ")
          .append(seconds(waited))
          .append(" s for the sidecar at ")
          .append(target)
          .append(" to become ready (wait-for-ready), but it never connected");
    } else {
      text.append("could not connect to the sidecar at ").append(target);
    }
    text.append("; last connection error: ").append(found);
    String cause = cause(lastError, tls);
    if (!cause.isEmpty()) {
      text.append("; ").append(cause);
    }
    if (waitForReady) {
      text.append(". Turn wait-for-ready off to fail fast instead of waiting");
    }
    return text.toString();
  }

  private static String seconds(Duration d) {
    return String.format(Locale.ROOT, "%.3g", d.toNanos() / 1e9);
  }
}
