package dev.pdsidecar.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The one exception the library throws for a failed call, read from the sidecar's rich status:
 * the gRPC {@link #code()}, the {@code google.rpc.ErrorInfo} {@link #reason()} from the sidecar's
 * error table ({@code ACCOUNT_DEAD}, {@code RATE_LIMITED}, ...) and its {@link #metadata()}, the
 * {@code RetryInfo} delay as {@link #retryAfter()}, {@code BadRequest} {@link #violations()}, and,
 * when the call never reached the sidecar, a {@link #hint()} naming the target, gRPC's last
 * connection error and its likely cause.
 *
 * <p>Unchecked, like grpc-java's {@code StatusRuntimeException}. Never carries a credential or
 * the API token.
 */
public final class CredentialsException extends RuntimeException {
  private static final long serialVersionUID = 1L;
  /** ErrorInfo's domain for the sidecar's reasons. */
  static final String DOMAIN = "pdsidecar";

  /** One {@code google.rpc.BadRequest} field violation. */
  public record Violation(String field, String description) implements java.io.Serializable {}

  private final Status.Code code;
  private final String statusMessage;
  private final String reason;
  private final Map<String, String> metadata;
  private final Duration retryAfter;
  private final List<Violation> violations;
  private final String hint;

  public CredentialsException(Status.Code code, String message) {
    this(code, message, "", Map.of(), null, List.of(), null, null);
  }

  private CredentialsException(
      Status.Code code,
      String message,
      String reason,
      Map<String, String> metadata,
      Duration retryAfter,
      List<Violation> violations,
      String hint,
      Throwable cause) {
    super(code + ": " + message + (reason.isEmpty() ? "" : " [" + reason + "]"), cause);
    this.code = code;
    this.statusMessage = message;
    this.reason = reason;
    this.metadata = Map.copyOf(metadata);
    this.retryAfter = retryAfter;
    this.violations = List.copyOf(violations);
    this.hint = hint;
  }

  /** Reads a failed gRPC call ({@code StatusRuntimeException} or {@code StatusException}). */
  static CredentialsException from(Throwable failure) {
    Status status = Status.fromThrowable(failure);
    String reason = "";
    Map<String, String> metadata = Map.of();
    Duration retryAfter = null;
    List<Violation> violations = new ArrayList<>();
    com.google.rpc.Status details = StatusProto.fromThrowable(failure);
    if (details != null) {
      for (Any detail : details.getDetailsList()) {
        try {
          if (detail.is(ErrorInfo.class)) {
            ErrorInfo info = detail.unpack(ErrorInfo.class);
            if (DOMAIN.equals(info.getDomain())) {
              reason = info.getReason();
              metadata = info.getMetadataMap();
            }
          } else if (detail.is(RetryInfo.class)) {
            com.google.protobuf.Duration delay = detail.unpack(RetryInfo.class).getRetryDelay();
            retryAfter = Duration.ofSeconds(delay.getSeconds(), delay.getNanos());
          } else if (detail.is(BadRequest.class)) {
            for (BadRequest.FieldViolation v :
                detail.unpack(BadRequest.class).getFieldViolationsList()) {
              violations.add(new Violation(v.getField(), v.getDescription()));
            }
          }
        } catch (InvalidProtocolBufferException unreadable) {
          // A detail we cannot read says nothing we can use; the status itself still stands.
        }
      }
    }
    String message = status.getDescription() == null ? "" : status.getDescription();
    return new CredentialsException(
        status.getCode(), message, reason, metadata, retryAfter, violations, null,
        status.getCause());
  }

  /** The same failure, said as a call that never reached the sidecar at {@code target}. */
  CredentialsException unconnected(String sentence) {
    return new CredentialsException(
        code, sentence, reason, metadata, retryAfter, violations, sentence, getCause());
  }

  /** A fresh copy to throw again (a stored error, thrown by every later read). */
  CredentialsException rethrown() {
    return new CredentialsException(
        code, statusMessage, reason, metadata, retryAfter, violations, hint, this);
  }

  /** A new error with this one's code and details and another message. */
  CredentialsException withMessage(String message) {
    return new CredentialsException(
        code, message, reason, metadata, retryAfter, violations, hint, this);
  }

  public Status.Code code() {
    return code;
  }

  /** The status message (or, when the call never reached the sidecar, the hint's sentence). */
  public String statusMessage() {
    return statusMessage;
  }

  /** The ErrorInfo reason when the sidecar sent one ({@code ACCOUNT_DEAD}, ...); else "". */
  public String reason() {
    return reason;
  }

  /** ErrorInfo metadata (string map); empty when none. */
  public Map<String, String> metadata() {
    return metadata;
  }

  /** When the sidecar says to retry ({@code RetryInfo}); empty when it did not. */
  public Optional<Duration> retryAfter() {
    return Optional.ofNullable(retryAfter);
  }

  public List<Violation> violations() {
    return violations;
  }

  /**
   * Only when the call never reached the sidecar: a sentence naming the target, gRPC's last
   * connection error and the likely cause; empty when the sidecar answered.
   */
  public Optional<String> hint() {
    return Optional.ofNullable(hint);
  }
}
