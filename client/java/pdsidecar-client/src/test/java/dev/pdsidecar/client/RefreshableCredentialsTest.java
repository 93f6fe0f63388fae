package dev.pdsidecar.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.rpc.Code;
import dev.pdsidecar.v1.GetCredentialsRequest;
import dev.pdsidecar.v1.GetCredentialsResponse;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class RefreshableCredentialsTest {
  private static final AccountRef REF = AccountRef.of("proj_test", "apn_test1", "notion");
  private FakeSidecar sidecar;
  private CredentialsClient client;

  @BeforeEach
  void start() throws Exception {
    sidecar = new FakeSidecar();
    client = sidecar.client().build();
  }

  @AfterEach
  void stop() throws Exception {
    client.close();
    sidecar.close();
  }

  private static FrozenCredentials next(CompletableFuture<FrozenCredentials> update)
      throws Exception {
    return update.get(5, TimeUnit.SECONDS);
  }

  @Test
  void firstValueIsThereOnReturnAndRotationsArePushed() throws Exception {
    List<String> seen = new CopyOnWriteArrayList<>();
    try (RefreshableCredentials creds =
        client.refreshableCredentials(REF, value -> seen.add(value.accessToken()))) {
      assertEquals("tok-1", creds.accessToken());
      assertEquals("r-tok-1", creds.credentials().get("refresh_token"));
      CompletableFuture<FrozenCredentials> update = creds.nextUpdate();
      sidecar.push("tok-2");
      assertEquals("tok-2", next(update).accessToken());
      assertEquals("tok-2", creds.accessToken());
      assertEquals(List.of("tok-1", "tok-2"), seen);
      assertFalse(creds.toString().contains("tok-"), creds.toString());
      assertFalse(creds.frozenCredentials().toString().contains("tok-"));
    }
  }

  @Test
  void aStreamEndingUnavailableIsOpenedAgainWhileReadsKeepTheLastValue() throws Exception {
    try (RefreshableCredentials creds = client.refreshableCredentials(REF)) {
      assertTrue(sidecar.awaitWatchOpened());
      sidecar.watchSendsFirst = false; // the next stream waits for a push
      sidecar.endWatches(Status.UNAVAILABLE.withDescription("sidecar restarting").asRuntimeException());
      assertEquals("tok-1", creds.accessToken()); // readers never notice
      assertTrue(sidecar.awaitWatchOpened());
      assertEquals(1, creds.reconnects());
      CompletableFuture<FrozenCredentials> update = creds.nextUpdate();
      sidecar.push("tok-2");
      assertEquals("tok-2", next(update).accessToken());
    }
  }

  @Test
  void sidecarStoppingReconnectsAtOnceAndRetryInfoSetsTheDelay() {
    CredentialsException stopping =
        CredentialsException.from(FakeSidecar.failure(Code.UNAVAILABLE, "SIDECAR_STOPPING", null));
    assertEquals(Duration.ZERO, RefreshableCredentials.reconnectDelay(stopping, Duration.ofSeconds(2)));
    CredentialsException limited =
        CredentialsException.from(
            FakeSidecar.failure(Code.RESOURCE_EXHAUSTED, "TOO_MANY_WATCHERS", Duration.ofSeconds(3)));
    assertEquals(Duration.ofSeconds(3), RefreshableCredentials.reconnectDelay(limited, Duration.ZERO));
    CredentialsException huge =
        CredentialsException.from(
            FakeSidecar.failure(Code.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", Duration.ofMinutes(5)));
    assertEquals(Duration.ofSeconds(30), RefreshableCredentials.reconnectDelay(huge, Duration.ZERO));
    CredentialsException plain = new CredentialsException(Status.Code.UNAVAILABLE, "gone");
    Duration delay = Duration.ZERO;
    List<Duration> delays = new java.util.ArrayList<>();
    for (int i = 0; i < 8; i++) {
      delay = RefreshableCredentials.reconnectDelay(plain, delay);
      delays.add(delay);
    }
    assertEquals(Duration.ofMillis(100), delays.get(0));
    assertEquals(Duration.ofMillis(200), delays.get(1));
    assertEquals(Duration.ofSeconds(5), delays.get(7));
    CredentialsException dead =
        CredentialsException.from(FakeSidecar.failure(Code.FAILED_PRECONDITION, "ACCOUNT_DEAD", null));
    assertNull(RefreshableCredentials.reconnectDelay(dead, Duration.ZERO));
  }

  @Test
  void anAccountProblemSurfacesOnTheNextRead() throws Exception {
    try (RefreshableCredentials creds = client.refreshableCredentials(REF)) {
      assertTrue(sidecar.awaitWatchOpened());
      CompletableFuture<FrozenCredentials> update = creds.nextUpdate();
      sidecar.endWatches(FakeSidecar.failure(Code.FAILED_PRECONDITION, "ACCOUNT_DEAD", null));
      ExecutionException ended = assertThrows(ExecutionException.class, () -> next(update));
      assertEquals("ACCOUNT_DEAD", ((CredentialsException) ended.getCause()).reason());
      CredentialsException read = assertThrows(CredentialsException.class, creds::accessToken);
      assertEquals(Status.Code.FAILED_PRECONDITION, read.code());
      assertEquals("ACCOUNT_DEAD", read.reason());
      assertEquals(0, creds.reconnects());
      assertTrue(creds.toString().contains("ACCOUNT_DEAD"), creds.toString());
    }
  }

  @Test
  void theAccountsOwnErrorIsThrownByTheFactory() {
    sidecar.watchFailure = FakeSidecar.failure(Code.NOT_FOUND, "ACCOUNT_NOT_FOUND", null);
    CredentialsException e =
        assertThrows(CredentialsException.class, () -> client.refreshableCredentials(REF));
    assertEquals("ACCOUNT_NOT_FOUND", e.reason());
  }

  @Test
  void noFirstValueWithinTheDeadlineClosesAndThrows() throws Exception {
    sidecar.watchSendsFirst = false;
    try (CredentialsClient quick =
        sidecar.client().defaultDeadline(Duration.ofMillis(200)).build()) {
      CredentialsException e =
          assertThrows(CredentialsException.class, () -> quick.refreshableCredentials(REF));
      assertEquals(Status.Code.DEADLINE_EXCEEDED, e.code());
      assertTrue(sidecar.watchCancelled.tryAcquire(5, TimeUnit.SECONDS)); // the stream was closed
    }
  }

  @Test
  void rejectAsksForAnotherTokenAndReturnsIt() throws Exception {
    sidecar.onGet =
        request ->
            GetCredentialsResponse.newBuilder()
                .putCredentials("access_token", "tok-fresh")
                .build();
    try (RefreshableCredentials creds = client.refreshableCredentials(REF)) {
      assertEquals("tok-fresh", creds.reject("tok-1", Duration.ofSeconds(5)).accessToken());
      assertEquals("tok-fresh", creds.accessToken());
      GetCredentialsRequest sent = sidecar.gets.take();
      assertEquals("tok-1", sent.getRejectedAccessToken());
      // The rejected token arriving late on the stream does not win back.
      sidecar.push("tok-1");
      CompletableFuture<FrozenCredentials> update = creds.nextUpdate();
      sidecar.push("tok-3");
      assertEquals("tok-3", next(update).accessToken());
      // Rejecting a token the object no longer holds returns at once, without a call.
      assertEquals("tok-3", creds.reject("tok-1").accessToken());
      assertTrue(sidecar.gets.isEmpty());
    }
  }

  @Test
  void rejectWaitsForTheStreamWhenTheRefetchAnswersTheSameToken() throws Exception {
    try (RefreshableCredentials creds = client.refreshableCredentials(REF)) {
      CompletableFuture<FrozenCredentials> rejected =
          CompletableFuture.supplyAsync(() -> creds.reject("tok-1", Duration.ofSeconds(5)));
      sidecar.gets.take(); // the refetch answered tok-1 again; reject now waits
      sidecar.push("tok-2");
      assertEquals("tok-2", rejected.get(5, TimeUnit.SECONDS).accessToken());
    }
  }

  @Test
  void rejectFailsWithDeadlineExceededWhenNoOtherTokenComes() throws Exception {
    try (RefreshableCredentials creds = client.refreshableCredentials(REF)) {
      CredentialsException e =
          assertThrows(
              CredentialsException.class, () -> creds.reject("tok-1", Duration.ofMillis(150)));
      assertEquals(Status.Code.DEADLINE_EXCEEDED, e.code());
      assertEquals("tok-1", creds.accessToken()); // still usable
    }
  }

  @Test
  void closeCancelsTheStreamAndLaterReadsThrowCancelled() throws Exception {
    RefreshableCredentials creds = client.refreshableCredentials(REF);
    CompletableFuture<FrozenCredentials> update = creds.nextUpdate();
    creds.close();
    creds.close(); // idempotent
    assertTrue(sidecar.watchCancelled.tryAcquire(5, TimeUnit.SECONDS));
    CredentialsException read = assertThrows(CredentialsException.class, creds::accessToken);
    assertEquals(Status.Code.CANCELLED, read.code());
    assertTrue(update.isCompletedExceptionally());
    assertTrue(creds.toString().contains("closed"), creds.toString());
    assertEquals(0, sidecar.openWatches());
  }

  @Test
  void readsFromManyThreadsSeeWholeValues() throws Exception {
    try (RefreshableCredentials creds = client.refreshableCredentials(REF)) {
      Thread[] readers = new Thread[4];
      boolean[] torn = {false};
      for (int i = 0; i < readers.length; i++) {
        readers[i] =
            new Thread(
                () -> {
                  for (int n = 0; n < 50_000; n++) {
                    FrozenCredentials value = creds.frozenCredentials();
                    if (!value.credentials().get("refresh_token").equals("r-" + value.accessToken())) {
                      torn[0] = true;
                    }
                  }
                });
        readers[i].start();
      }
      for (int n = 2; n < 200; n++) {
        sidecar.push("tok-" + n);
      }
      for (Thread reader : readers) {
        reader.join();
      }
      assertFalse(torn[0]);
    }
  }
}
