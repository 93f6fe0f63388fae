package dev.pdsidecar.client;

import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import com.google.rpc.Code;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import dev.pdsidecar.v1.AccountInfo;
import dev.pdsidecar.v1.CredentialsServiceGrpc;
import dev.pdsidecar.v1.GetCredentialsRequest;
import dev.pdsidecar.v1.GetCredentialsResponse;
import dev.pdsidecar.v1.ListAccountsRequest;
import dev.pdsidecar.v1.ListAccountsResponse;
import dev.pdsidecar.v1.WatchCredentialsRequest;
import dev.pdsidecar.v1.WatchCredentialsResponse;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

/**
 * An in-process sidecar whose answers each test sets: the current token, failures with the
 * sidecar's rich status, and the open WatchCredentials streams, which the test pushes values into
 * or ends. It counts what it was asked.
 */
final class FakeSidecar extends CredentialsServiceGrpc.CredentialsServiceImplBase
    implements AutoCloseable {
  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  volatile String token = "tok-1";
  /** When set, GetCredentials answers with it instead of the token. */
  volatile Function<GetCredentialsRequest, GetCredentialsResponse> onGet;
  /** When set, a new WatchCredentials stream ends at once with it. */
  volatile StatusRuntimeException watchFailure;
  /** When false, a new stream sends nothing until pushed to. */
  volatile boolean watchSendsFirst = true;
  volatile int accounts = 0;

  final BlockingQueue<GetCredentialsRequest> gets = new LinkedBlockingQueue<>();
  final AtomicInteger listCalls = new AtomicInteger();
  final Semaphore watchOpened = new Semaphore(0);
  final Semaphore watchCancelled = new Semaphore(0);
  final BlockingQueue<String> authorizations = new LinkedBlockingQueue<>();
  private final List<StreamObserver<WatchCredentialsResponse>> watchers =
      new CopyOnWriteArrayList<>();

  private final String name = InProcessServerBuilder.generateName();
  private final Server server;

  FakeSidecar() throws IOException {
    ServerInterceptor recordAuthorization =
        new ServerInterceptor() {
          @Override
          public <Q, R> ServerCall.Listener<Q> interceptCall(
              ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
            String value = headers.get(AUTHORIZATION);
            authorizations.add(value == null ? "" : value);
            return next.startCall(call, headers);
          }
        };
    server =
        InProcessServerBuilder.forName(name)
            .directExecutor()
            .addService(ServerInterceptors.intercept(this, recordAuthorization))
            .build()
            .start();
  }

  private final List<ManagedChannel> channels = new CopyOnWriteArrayList<>();

  CredentialsClient.Builder client() {
    ManagedChannel channel =
        InProcessChannelBuilder.forName(name)
            .defaultServiceConfig(CredentialsClient.serviceConfig())
            .enableRetry()
            .build();
    channels.add(channel);
    return CredentialsClient.builder("in-process:" + name)
        .channel(channel)
        .defaultDeadline(Duration.ofSeconds(5));
  }

  static WatchCredentialsResponse value(String token) {
    return WatchCredentialsResponse.newBuilder()
        .putCredentials("access_token", token)
        .putCredentials("refresh_token", "r-" + token)
        .setAccount(AccountInfo.newBuilder().setAccountId("apn_test1"))
        .build();
  }

  /** A failure as the sidecar sends it: code, ErrorInfo reason, optional RetryInfo. */
  static StatusRuntimeException failure(Code code, String reason, Duration retryAfter) {
    com.google.rpc.Status.Builder status =
        com.google.rpc.Status.newBuilder().setCode(code.getNumber()).setMessage("fake: " + reason);
    status.addDetails(
        Any.pack(
            ErrorInfo.newBuilder()
                .setDomain("pdsidecar")
                .setReason(reason)
                .putAllMetadata(Map.of("account_id", "apn_test1"))
                .build()));
    if (retryAfter != null) {
      status.addDetails(
          Any.pack(
              RetryInfo.newBuilder()
                  .setRetryDelay(
                      com.google.protobuf.Duration.newBuilder()
                          .setSeconds(retryAfter.getSeconds())
                          .setNanos(retryAfter.getNano()))
                  .build()));
    }
    if (code == Code.INVALID_ARGUMENT) {
      status.addDetails(
          Any.pack(
              BadRequest.newBuilder()
                  .addFieldViolations(
                      BadRequest.FieldViolation.newBuilder()
                          .setField("account.project_id")
                          .setDescription("must start with proj_"))
                  .build()));
    }
    return StatusProto.toStatusRuntimeException(status.build());
  }

  @Override
  public void getCredentials(
      GetCredentialsRequest request, StreamObserver<GetCredentialsResponse> answer) {
    gets.add(request);
    Function<GetCredentialsRequest, GetCredentialsResponse> custom = onGet;
    try {
      GetCredentialsResponse response =
          custom != null
              ? custom.apply(request)
              : GetCredentialsResponse.newBuilder()
                  .putAllCredentials(value(token).getCredentialsMap())
                  .build();
      answer.onNext(response);
      answer.onCompleted();
    } catch (StatusRuntimeException failed) {
      answer.onError(failed);
    }
  }

  @Override
  public void listAccounts(
      ListAccountsRequest request, StreamObserver<ListAccountsResponse> answer) {
    listCalls.incrementAndGet();
    int start = request.getPageToken().isEmpty() ? 0 : Integer.parseInt(request.getPageToken());
    int end = Math.min(start + request.getPageSize(), accounts);
    ListAccountsResponse.Builder page = ListAccountsResponse.newBuilder();
    for (int i = start; i < end; i++) {
      page.addAccounts(AccountInfo.newBuilder().setAccountId("apn_" + i));
    }
    if (end < accounts) {
      page.setNextPageToken(Integer.toString(end));
    }
    answer.onNext(page.build());
    answer.onCompleted();
  }

  @Override
  public void watchCredentials(
      WatchCredentialsRequest request, StreamObserver<WatchCredentialsResponse> stream) {
    ((ServerCallStreamObserver<WatchCredentialsResponse>) stream)
        .setOnCancelHandler(
            () -> {
              watchers.remove(stream);
              watchCancelled.release();
            });
    StatusRuntimeException failing = watchFailure;
    if (failing != null) {
      stream.onError(failing);
      watchOpened.release();
      return;
    }
    watchers.add(stream);
    if (watchSendsFirst) {
      stream.onNext(value(token));
    }
    watchOpened.release();
  }

  /** Sends a new token on every open stream (the sidecar's rotation). */
  void push(String newToken) {
    token = newToken;
    for (StreamObserver<WatchCredentialsResponse> stream : watchers) {
      stream.onNext(value(newToken));
    }
  }

  /** Ends every open stream with {@code error}. */
  void endWatches(StatusRuntimeException error) {
    for (StreamObserver<WatchCredentialsResponse> stream : watchers) {
      watchers.remove(stream);
      stream.onError(error);
    }
  }

  int openWatches() {
    return watchers.size();
  }

  boolean awaitWatchOpened() throws InterruptedException {
    return watchOpened.tryAcquire(5, TimeUnit.SECONDS);
  }

  @Override
  public void close() throws InterruptedException {
    channels.forEach(ManagedChannel::shutdownNow);
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }
}
