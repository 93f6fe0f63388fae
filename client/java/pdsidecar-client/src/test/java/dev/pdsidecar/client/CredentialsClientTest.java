package dev.pdsidecar.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.rpc.Code;
import dev.pdsidecar.v1.AccountInfo;
import dev.pdsidecar.v1.GetCredentialsRequest;
import dev.pdsidecar.v1.ListAccountsResponse;
import io.grpc.Status;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class CredentialsClientTest {
  private static final AccountRef REF = AccountRef.of("proj_test", "apn_test1", "notion");
  private FakeSidecar sidecar;

  @BeforeEach
  void start() throws Exception {
    sidecar = new FakeSidecar();
  }

  @AfterEach
  void stop() throws Exception {
    sidecar.close();
  }

  @Test
  void getCredentialsSendsTheAccountRefAndTheApiToken() throws Exception {
    AccountRef ref =
        REF.withEnvironment("development")
            .withExternalUserId("user-1")
            .withRequiredFields("access_token", "refresh_token");
    try (CredentialsClient client = sidecar.client().apiToken("test-api-token").build()) {
      assertEquals("tok-1", client.getCredentials(ref).getCredentialsOrThrow("access_token"));
    }
    GetCredentialsRequest sent = sidecar.gets.take();
    assertEquals("proj_test", sent.getAccount().getProjectId());
    assertEquals("apn_test1", sent.getAccount().getAccountId());
    assertEquals("user-1", sent.getAccount().getExternalUserId());
    assertEquals(dev.pdsidecar.v1.Environment.ENVIRONMENT_DEVELOPMENT, sent.getAccount().getEnvironment());
    assertEquals(List.of("access_token", "refresh_token"), sent.getRequiredFieldsList());
    assertEquals("Bearer test-api-token", sidecar.authorizations.take());
  }

  @Test
  void rateLimitedReadsCodeReasonMetadataAndRetryDelay() throws Exception {
    sidecar.onGet =
        request -> {
          throw FakeSidecar.failure(Code.RESOURCE_EXHAUSTED, "RATE_LIMITED", Duration.ofMillis(7500));
        };
    try (CredentialsClient client = sidecar.client().build()) {
      CredentialsException e = assertThrows(CredentialsException.class, () -> client.getCredentials(REF));
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.code());
      assertEquals("RATE_LIMITED", e.reason());
      assertEquals(Optional.of(Duration.ofMillis(7500)), e.retryAfter());
      assertEquals(Map.of("account_id", "apn_test1"), e.metadata());
      assertEquals(Optional.empty(), e.hint()); // the sidecar answered
      assertTrue(e.getMessage().contains("RATE_LIMITED"), e.getMessage());
    }
    assertEquals(1, sidecar.gets.size()); // not retried: RESOURCE_EXHAUSTED is the caller's
  }

  @Test
  void invalidRequestCarriesTheViolations() throws Exception {
    sidecar.onGet =
        request -> {
          throw FakeSidecar.failure(Code.INVALID_ARGUMENT, "INVALID_REQUEST", null);
        };
    try (CredentialsClient client = sidecar.client().build()) {
      CredentialsException e = assertThrows(CredentialsException.class, () -> client.getCredentials(REF));
      assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
      assertEquals(
          List.of(new CredentialsException.Violation("account.project_id", "must start with proj_")),
          e.violations());
      assertEquals(Optional.empty(), e.retryAfter());
    }
  }

  @Test
  void unavailableIsRetriedByTheServiceConfig() throws Exception {
    int[] calls = {0};
    sidecar.onGet =
        request -> {
          if (++calls[0] < 3) {
            throw Status.UNAVAILABLE.withDescription("restarting").asRuntimeException();
          }
          return dev.pdsidecar.v1.GetCredentialsResponse.newBuilder()
              .putCredentials("access_token", "tok-after-retries")
              .build();
        };
    try (CredentialsClient client = sidecar.client().build()) {
      assertEquals(
          "tok-after-retries", client.getCredentials(REF).getCredentialsOrThrow("access_token"));
    }
    assertEquals(3, sidecar.gets.size());
  }

  @Test
  void accountPagesFetchLazilyPageByPage() throws Exception {
    sidecar.accounts = 23;
    try (CredentialsClient client = sidecar.client().build()) {
      AccountPages pages = client.accountPages("proj_test", 10);
      assertEquals(0, sidecar.listCalls.get()); // nothing until the first step
      Iterator<ListAccountsResponse> it = pages.iterator();
      assertEquals(10, it.next().getAccountsCount());
      assertEquals(1, sidecar.listCalls.get());
      assertEquals(10, it.next().getAccountsCount());
      assertEquals(3, it.next().getAccountsCount());
      assertFalse(it.hasNext());
      assertEquals(3, sidecar.listCalls.get());
      List<String> ids = new ArrayList<>();
      for (AccountInfo account : pages.accounts()) {
        ids.add(account.getAccountId());
      }
      assertEquals(23, ids.size());
      assertEquals("apn_22", ids.get(22));
    }
  }

  @Test
  void optionsAreCheckedAtBuild() {
    assertThrows(
        IllegalArgumentException.class, () -> AccountRef.of("p", "a", "s").withEnvironment("prod"));
    assertThrows(
        IllegalArgumentException.class,
        () -> CredentialsClient.builder("unix:relative.sock").build());
    assertThrows(
        IllegalArgumentException.class,
        () -> CredentialsClient.builder("127.0.0.1:1").tlsCa(Path.of("/nonexistent/ca.pem")).build());
    assertThrows(
        IllegalArgumentException.class,
        () -> CredentialsClient.builder("127.0.0.1:1").tlsServerName("sidecar").build());
    IllegalArgumentException badToken =
        assertThrows(
            IllegalArgumentException.class,
            () -> CredentialsClient.builder("127.0.0.1:1").apiToken("has space secret").build());
    assertFalse(badToken.getMessage().contains("secret"));
  }

  @Test
  void unreachableTargetFailsFastWithAHintNamingIt() throws Exception {
    String target = "127.0.0.1:" + closedPort();
    try (CredentialsClient client =
        CredentialsClient.builder(target).waitForReady(false).build()) {
      assertFalse(client.awaitConnection(Duration.ofSeconds(30))); // the attempt failed
      CredentialsException e =
          assertThrows(CredentialsException.class, () -> client.refreshToken("", false));
      assertEquals(Status.Code.UNAVAILABLE, e.code()); // not a deadline: it did not wait
      String hint = e.hint().orElseThrow();
      assertTrue(hint.contains(target), hint);
      assertTrue(hint.contains("nothing listens there"), hint);
    }
  }

  @Test
  void waitForReadyTurnsAnAbsentSidecarIntoDeadlineExceededWithTheHint() throws Exception {
    String target = "127.0.0.1:" + closedPort();
    try (CredentialsClient client =
        CredentialsClient.builder(target).defaultDeadline(Duration.ofMillis(300)).build()) {
      CredentialsException e =
          assertThrows(CredentialsException.class, () -> client.refreshToken("", false));
      assertEquals(Status.Code.DEADLINE_EXCEEDED, e.code());
      String hint = e.hint().orElseThrow();
      assertTrue(hint.contains("wait-for-ready") && hint.contains(target), hint);
    }
  }

  private static int closedPort() throws Exception {
    try (ServerSocket socket = new ServerSocket(0)) {
      return socket.getLocalPort();
    }
  }
}
