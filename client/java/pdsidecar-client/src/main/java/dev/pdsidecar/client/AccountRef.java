package dev.pdsidecar.client;

import dev.pdsidecar.v1.Environment;
import dev.pdsidecar.v1.GetCredentialsRequest;
import dev.pdsidecar.v1.ValidateAccountRequest;
import dev.pdsidecar.v1.WatchCredentialsRequest;
import java.util.List;
import java.util.Objects;

/**
 * What to fetch: one Pipedream Connect account, the source it serves, and the credential fields
 * wanted. Every call that names an account takes one, so no method repeats eight parameters.
 *
 * <pre>{@code
 * AccountRef ref = AccountRef.of("proj_abc", "apn_xyz", "notion")
 *     .withEnvironment("development")
 *     .withRequiredFields("access_token", "refresh_token");
 * }</pre>
 *
 * <p>Empty strings and empty lists mean the sidecar's defaults (connection {@code default},
 * environment {@code production}, required {@code access_token}). Not to be confused with the
 * wire message {@link dev.pdsidecar.v1.AccountRef}, which this builds.
 *
 * @param environment {@code ""}, {@code "production"} or {@code "development"}
 */
public record AccountRef(
    String projectId,
    String accountId,
    String source,
    String connection,
    String environment,
    String externalUserId,
    List<String> requiredFields,
    List<String> optionalFields) {

  public AccountRef {
    Objects.requireNonNull(projectId, "projectId");
    Objects.requireNonNull(accountId, "accountId");
    Objects.requireNonNull(source, "source");
    Objects.requireNonNull(connection, "connection");
    Objects.requireNonNull(externalUserId, "externalUserId");
    environment(environment); // rejects an unknown name now, not at the first call
    requiredFields = List.copyOf(requiredFields);
    optionalFields = List.copyOf(optionalFields);
  }

  public static AccountRef of(String projectId, String accountId, String source) {
    return new AccountRef(projectId, accountId, source, "", "", "", List.of(), List.of());
  }

  public AccountRef withConnection(String connection) {
    return new AccountRef(
        projectId, accountId, source, connection, environment, externalUserId,
        requiredFields, optionalFields);
  }

  public AccountRef withEnvironment(String environment) {
    return new AccountRef(
        projectId, accountId, source, connection, environment, externalUserId,
        requiredFields, optionalFields);
  }

  public AccountRef withExternalUserId(String externalUserId) {
    return new AccountRef(
        projectId, accountId, source, connection, environment, externalUserId,
        requiredFields, optionalFields);
  }

  public AccountRef withRequiredFields(String... fields) {
    return new AccountRef(
        projectId, accountId, source, connection, environment, externalUserId,
        List.of(fields), optionalFields);
  }

  public AccountRef withOptionalFields(String... fields) {
    return new AccountRef(
        projectId, accountId, source, connection, environment, externalUserId,
        requiredFields, List.of(fields));
  }

  /** The wire {@code Environment} for a name; an unknown name is a usage error. */
  static Environment environment(String name) {
    return switch (Objects.requireNonNull(name, "environment")) {
      case "" -> Environment.ENVIRONMENT_UNSPECIFIED;
      case "production" -> Environment.ENVIRONMENT_PRODUCTION;
      case "development" -> Environment.ENVIRONMENT_DEVELOPMENT;
      default ->
          throw new IllegalArgumentException(
              "environment must be \"production\" or \"development\", not \"" + name + "\"");
    };
  }

  dev.pdsidecar.v1.AccountRef toProto() {
    return dev.pdsidecar.v1.AccountRef.newBuilder()
        .setProjectId(projectId)
        .setAccountId(accountId)
        .setConnection(connection)
        .setEnvironment(environment(environment))
        .setExternalUserId(externalUserId)
        .build();
  }

  GetCredentialsRequest getRequest(String rejectedAccessToken) {
    return GetCredentialsRequest.newBuilder()
        .setAccount(toProto())
        .setSource(source)
        .addAllRequiredFields(requiredFields)
        .addAllOptionalFields(optionalFields)
        .setRejectedAccessToken(rejectedAccessToken)
        .build();
  }

  ValidateAccountRequest validateRequest() {
    return ValidateAccountRequest.newBuilder()
        .setAccount(toProto())
        .setSource(source)
        .addAllRequiredFields(requiredFields)
        .addAllOptionalFields(optionalFields)
        .build();
  }

  WatchCredentialsRequest watchRequest() {
    return WatchCredentialsRequest.newBuilder()
        .setAccount(toProto())
        .setSource(source)
        .addAllRequiredFields(requiredFields)
        .addAllOptionalFields(optionalFields)
        .build();
  }
}
