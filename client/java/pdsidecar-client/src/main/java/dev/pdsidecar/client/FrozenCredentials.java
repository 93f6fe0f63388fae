package dev.pdsidecar.client;

import com.google.protobuf.Timestamp;
import dev.pdsidecar.v1.AccountInfo;
import dev.pdsidecar.v1.GetCredentialsResponse;
import dev.pdsidecar.v1.WatchCredentialsResponse;
import java.time.Instant;
import java.util.Map;
import java.util.Optional;
import java.util.TreeSet;

/**
 * One consistent value of an account's credentials: every field from the same sidecar message.
 * Immutable, so it is shared between threads as it is. Its text form names the fields, never
 * their values.
 */
public final class FrozenCredentials {
  private final String accessToken;
  private final Map<String, String> credentials;
  private final Instant expiresAt; // null when Pipedream reports none
  private final AccountInfo account;

  private FrozenCredentials(
      Map<String, String> credentials, Instant expiresAt, AccountInfo account) {
    this.credentials = Map.copyOf(credentials);
    this.accessToken = this.credentials.getOrDefault("access_token", "");
    this.expiresAt = expiresAt;
    this.account = account;
  }

  static FrozenCredentials of(WatchCredentialsResponse message) {
    return new FrozenCredentials(
        message.getCredentialsMap(),
        message.hasExpiresAt() ? instant(message.getExpiresAt()) : null,
        message.getAccount());
  }

  static FrozenCredentials of(GetCredentialsResponse message) {
    return new FrozenCredentials(
        message.getCredentialsMap(),
        message.hasExpiresAt() ? instant(message.getExpiresAt()) : null,
        message.getAccount());
  }

  private static Instant instant(Timestamp ts) {
    return Instant.ofEpochSecond(ts.getSeconds(), ts.getNanos());
  }

  /** The {@code access_token} field; "" when the account has none (an API-key source). */
  public String accessToken() {
    return accessToken;
  }

  /** Every field under Airweave names (unmodifiable). */
  public Map<String, String> credentials() {
    return credentials;
  }

  public Optional<Instant> expiresAt() {
    return Optional.ofNullable(expiresAt);
  }

  /** Whether {@link #expiresAt()} has passed (never, when there is none). */
  public boolean expired() {
    return expiresAt != null && !Instant.now().isBefore(expiresAt);
  }

  /** The account as Pipedream describes it (no credential values). */
  public AccountInfo account() {
    return account;
  }

  @Override
  public String toString() {
    return "FrozenCredentials{fields="
        + new TreeSet<>(credentials.keySet())
        + ", expiresAt="
        + expiresAt
        + "}";
  }
}
