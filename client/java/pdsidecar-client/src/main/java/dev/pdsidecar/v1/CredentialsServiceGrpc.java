package dev.pdsidecar.v1;

import static io.grpc.MethodDescriptor.generateFullMethodName;

/**
 * <pre>
 * CredentialsService hands out the credentials of Pipedream Connect accounts.
 * </pre>
 */
@io.grpc.stub.annotations.GrpcGenerated
public final class CredentialsServiceGrpc {

  private CredentialsServiceGrpc() {}

  public static final java.lang.String SERVICE_NAME = "pdsidecar.v1.CredentialsService";

  // Static method descriptors that strictly reflect the proto.
  private static volatile io.grpc.MethodDescriptor<dev.pdsidecar.v1.GetCredentialsRequest,
      dev.pdsidecar.v1.GetCredentialsResponse> getGetCredentialsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "GetCredentials",
      requestType = dev.pdsidecar.v1.GetCredentialsRequest.class,
      responseType = dev.pdsidecar.v1.GetCredentialsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.pdsidecar.v1.GetCredentialsRequest,
      dev.pdsidecar.v1.GetCredentialsResponse> getGetCredentialsMethod() {
    io.grpc.MethodDescriptor<dev.pdsidecar.v1.GetCredentialsRequest, dev.pdsidecar.v1.GetCredentialsResponse> getGetCredentialsMethod;
    if ((getGetCredentialsMethod = CredentialsServiceGrpc.getGetCredentialsMethod) == null) {
      synchronized (CredentialsServiceGrpc.class) {
        if ((getGetCredentialsMethod = CredentialsServiceGrpc.getGetCredentialsMethod) == null) {
          CredentialsServiceGrpc.getGetCredentialsMethod = getGetCredentialsMethod =
              io.grpc.MethodDescriptor.<dev.pdsidecar.v1.GetCredentialsRequest, dev.pdsidecar.v1.GetCredentialsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "GetCredentials"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.pdsidecar.v1.GetCredentialsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.pdsidecar.v1.GetCredentialsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new CredentialsServiceMethodDescriptorSupplier("GetCredentials"))
              .build();
        }
      }
    }
    return getGetCredentialsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.pdsidecar.v1.ValidateAccountRequest,
      dev.pdsidecar.v1.ValidateAccountResponse> getValidateAccountMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ValidateAccount",
      requestType = dev.pdsidecar.v1.ValidateAccountRequest.class,
      responseType = dev.pdsidecar.v1.ValidateAccountResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.pdsidecar.v1.ValidateAccountRequest,
      dev.pdsidecar.v1.ValidateAccountResponse> getValidateAccountMethod() {
    io.grpc.MethodDescriptor<dev.pdsidecar.v1.ValidateAccountRequest, dev.pdsidecar.v1.ValidateAccountResponse> getValidateAccountMethod;
    if ((getValidateAccountMethod = CredentialsServiceGrpc.getValidateAccountMethod) == null) {
      synchronized (CredentialsServiceGrpc.class) {
        if ((getValidateAccountMethod = CredentialsServiceGrpc.getValidateAccountMethod) == null) {
          CredentialsServiceGrpc.getValidateAccountMethod = getValidateAccountMethod =
              io.grpc.MethodDescriptor.<dev.pdsidecar.v1.ValidateAccountRequest, dev.pdsidecar.v1.ValidateAccountResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ValidateAccount"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.pdsidecar.v1.ValidateAccountRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.pdsidecar.v1.ValidateAccountResponse.getDefaultInstance()))
              .setSchemaDescriptor(new CredentialsServiceMethodDescriptorSupplier("ValidateAccount"))
              .build();
        }
      }
    }
    return getValidateAccountMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.pdsidecar.v1.RefreshTokenRequest,
      dev.pdsidecar.v1.RefreshTokenResponse> getRefreshTokenMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "RefreshToken",
      requestType = dev.pdsidecar.v1.RefreshTokenRequest.class,
      responseType = dev.pdsidecar.v1.RefreshTokenResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.pdsidecar.v1.RefreshTokenRequest,
      dev.pdsidecar.v1.RefreshTokenResponse> getRefreshTokenMethod() {
    io.grpc.MethodDescriptor<dev.pdsidecar.v1.RefreshTokenRequest, dev.pdsidecar.v1.RefreshTokenResponse> getRefreshTokenMethod;
    if ((getRefreshTokenMethod = CredentialsServiceGrpc.getRefreshTokenMethod) == null) {
      synchronized (CredentialsServiceGrpc.class) {
        if ((getRefreshTokenMethod = CredentialsServiceGrpc.getRefreshTokenMethod) == null) {
          CredentialsServiceGrpc.getRefreshTokenMethod = getRefreshTokenMethod =
              io.grpc.MethodDescriptor.<dev.pdsidecar.v1.RefreshTokenRequest, dev.pdsidecar.v1.RefreshTokenResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "RefreshToken"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.pdsidecar.v1.RefreshTokenRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.pdsidecar.v1.RefreshTokenResponse.getDefaultInstance()))
              .setSchemaDescriptor(new CredentialsServiceMethodDescriptorSupplier("RefreshToken"))
              .build();
        }
      }
    }
    return getRefreshTokenMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.pdsidecar.v1.ListAccountsRequest,
      dev.pdsidecar.v1.ListAccountsResponse> getListAccountsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "ListAccounts",
      requestType = dev.pdsidecar.v1.ListAccountsRequest.class,
      responseType = dev.pdsidecar.v1.ListAccountsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.UNARY)
  public static io.grpc.MethodDescriptor<dev.pdsidecar.v1.ListAccountsRequest,
      dev.pdsidecar.v1.ListAccountsResponse> getListAccountsMethod() {
    io.grpc.MethodDescriptor<dev.pdsidecar.v1.ListAccountsRequest, dev.pdsidecar.v1.ListAccountsResponse> getListAccountsMethod;
    if ((getListAccountsMethod = CredentialsServiceGrpc.getListAccountsMethod) == null) {
      synchronized (CredentialsServiceGrpc.class) {
        if ((getListAccountsMethod = CredentialsServiceGrpc.getListAccountsMethod) == null) {
          CredentialsServiceGrpc.getListAccountsMethod = getListAccountsMethod =
              io.grpc.MethodDescriptor.<dev.pdsidecar.v1.ListAccountsRequest, dev.pdsidecar.v1.ListAccountsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.UNARY)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "ListAccounts"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.pdsidecar.v1.ListAccountsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.pdsidecar.v1.ListAccountsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new CredentialsServiceMethodDescriptorSupplier("ListAccounts"))
              .build();
        }
      }
    }
    return getListAccountsMethod;
  }

  private static volatile io.grpc.MethodDescriptor<dev.pdsidecar.v1.WatchCredentialsRequest,
      dev.pdsidecar.v1.WatchCredentialsResponse> getWatchCredentialsMethod;

  @io.grpc.stub.annotations.RpcMethod(
      fullMethodName = SERVICE_NAME + '/' + "WatchCredentials",
      requestType = dev.pdsidecar.v1.WatchCredentialsRequest.class,
      responseType = dev.pdsidecar.v1.WatchCredentialsResponse.class,
      methodType = io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
  public static io.grpc.MethodDescriptor<dev.pdsidecar.v1.WatchCredentialsRequest,
      dev.pdsidecar.v1.WatchCredentialsResponse> getWatchCredentialsMethod() {
    io.grpc.MethodDescriptor<dev.pdsidecar.v1.WatchCredentialsRequest, dev.pdsidecar.v1.WatchCredentialsResponse> getWatchCredentialsMethod;
    if ((getWatchCredentialsMethod = CredentialsServiceGrpc.getWatchCredentialsMethod) == null) {
      synchronized (CredentialsServiceGrpc.class) {
        if ((getWatchCredentialsMethod = CredentialsServiceGrpc.getWatchCredentialsMethod) == null) {
          CredentialsServiceGrpc.getWatchCredentialsMethod = getWatchCredentialsMethod =
              io.grpc.MethodDescriptor.<dev.pdsidecar.v1.WatchCredentialsRequest, dev.pdsidecar.v1.WatchCredentialsResponse>newBuilder()
              .setType(io.grpc.MethodDescriptor.MethodType.SERVER_STREAMING)
              .setFullMethodName(generateFullMethodName(SERVICE_NAME, "WatchCredentials"))
              .setSampledToLocalTracing(true)
              .setRequestMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.pdsidecar.v1.WatchCredentialsRequest.getDefaultInstance()))
              .setResponseMarshaller(io.grpc.protobuf.ProtoUtils.marshaller(
                  dev.pdsidecar.v1.WatchCredentialsResponse.getDefaultInstance()))
              .setSchemaDescriptor(new CredentialsServiceMethodDescriptorSupplier("WatchCredentials"))
              .build();
        }
      }
    }
    return getWatchCredentialsMethod;
  }

  /**
   * Creates a new async stub that supports all call types for the service
   */
  public static CredentialsServiceStub newStub(io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<CredentialsServiceStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<CredentialsServiceStub>() {
        @java.lang.Override
        public CredentialsServiceStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new CredentialsServiceStub(channel, callOptions);
        }
      };
    return CredentialsServiceStub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports all types of calls on the service
   */
  public static CredentialsServiceBlockingV2Stub newBlockingV2Stub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<CredentialsServiceBlockingV2Stub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<CredentialsServiceBlockingV2Stub>() {
        @java.lang.Override
        public CredentialsServiceBlockingV2Stub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new CredentialsServiceBlockingV2Stub(channel, callOptions);
        }
      };
    return CredentialsServiceBlockingV2Stub.newStub(factory, channel);
  }

  /**
   * Creates a new blocking-style stub that supports unary and streaming output calls on the service
   */
  public static CredentialsServiceBlockingStub newBlockingStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<CredentialsServiceBlockingStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<CredentialsServiceBlockingStub>() {
        @java.lang.Override
        public CredentialsServiceBlockingStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new CredentialsServiceBlockingStub(channel, callOptions);
        }
      };
    return CredentialsServiceBlockingStub.newStub(factory, channel);
  }

  /**
   * Creates a new ListenableFuture-style stub that supports unary calls on the service
   */
  public static CredentialsServiceFutureStub newFutureStub(
      io.grpc.Channel channel) {
    io.grpc.stub.AbstractStub.StubFactory<CredentialsServiceFutureStub> factory =
      new io.grpc.stub.AbstractStub.StubFactory<CredentialsServiceFutureStub>() {
        @java.lang.Override
        public CredentialsServiceFutureStub newStub(io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
          return new CredentialsServiceFutureStub(channel, callOptions);
        }
      };
    return CredentialsServiceFutureStub.newStub(factory, channel);
  }

  /**
   * <pre>
   * CredentialsService hands out the credentials of Pipedream Connect accounts.
   * </pre>
   */
  public interface AsyncService {

    /**
     * <pre>
     * GetCredentials returns an account's credentials under Airweave field names.
     * </pre>
     */
    default void getCredentials(dev.pdsidecar.v1.GetCredentialsRequest request,
        io.grpc.stub.StreamObserver<dev.pdsidecar.v1.GetCredentialsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getGetCredentialsMethod(), responseObserver);
    }

    /**
     * <pre>
     * ValidateAccount checks that an account can serve a source; problems with
     * the account come back as data, not as errors.
     * </pre>
     */
    default void validateAccount(dev.pdsidecar.v1.ValidateAccountRequest request,
        io.grpc.stub.StreamObserver<dev.pdsidecar.v1.ValidateAccountResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getValidateAccountMethod(), responseObserver);
    }

    /**
     * <pre>
     * RefreshToken refreshes a connection's Pipedream API token. It never
     * returns the token itself.
     * </pre>
     */
    default void refreshToken(dev.pdsidecar.v1.RefreshTokenRequest request,
        io.grpc.stub.StreamObserver<dev.pdsidecar.v1.RefreshTokenResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getRefreshTokenMethod(), responseObserver);
    }

    /**
     * <pre>
     * ListAccounts lists a project's connected accounts, without credential values.
     * </pre>
     */
    default void listAccounts(dev.pdsidecar.v1.ListAccountsRequest request,
        io.grpc.stub.StreamObserver<dev.pdsidecar.v1.ListAccountsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getListAccountsMethod(), responseObserver);
    }

    /**
     * <pre>
     * WatchCredentials streams an account's credentials: the first message at
     * once (what GetCredentials would answer), then one each time the
     * credentials change (Pipedream refreshed the source token, or a
     * rejected_access_token refetch found a new one). Account problems end the
     * stream with GetCredentials' status; Pipedream outages do not (the last
     * good value stands). A sidecar shutting down ends it with UNAVAILABLE:
     * reconnect.
     * </pre>
     */
    default void watchCredentials(dev.pdsidecar.v1.WatchCredentialsRequest request,
        io.grpc.stub.StreamObserver<dev.pdsidecar.v1.WatchCredentialsResponse> responseObserver) {
      io.grpc.stub.ServerCalls.asyncUnimplementedUnaryCall(getWatchCredentialsMethod(), responseObserver);
    }
  }

  /**
   * Base class for the server implementation of the service CredentialsService.
   * <pre>
   * CredentialsService hands out the credentials of Pipedream Connect accounts.
   * </pre>
   */
  public static abstract class CredentialsServiceImplBase
      implements io.grpc.BindableService, AsyncService {

    @java.lang.Override public final io.grpc.ServerServiceDefinition bindService() {
      return CredentialsServiceGrpc.bindService(this);
    }
  }

  /**
   * A stub to allow clients to do asynchronous rpc calls to service CredentialsService.
   * <pre>
   * CredentialsService hands out the credentials of Pipedream Connect accounts.
   * </pre>
   */
  public static final class CredentialsServiceStub
      extends io.grpc.stub.AbstractAsyncStub<CredentialsServiceStub> {
    private CredentialsServiceStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected CredentialsServiceStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new CredentialsServiceStub(channel, callOptions);
    }

    /**
     * <pre>
     * GetCredentials returns an account's credentials under Airweave field names.
     * </pre>
     */
    public void getCredentials(dev.pdsidecar.v1.GetCredentialsRequest request,
        io.grpc.stub.StreamObserver<dev.pdsidecar.v1.GetCredentialsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getGetCredentialsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * ValidateAccount checks that an account can serve a source; problems with
     * the account come back as data, not as errors.
     * </pre>
     */
    public void validateAccount(dev.pdsidecar.v1.ValidateAccountRequest request,
        io.grpc.stub.StreamObserver<dev.pdsidecar.v1.ValidateAccountResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getValidateAccountMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * RefreshToken refreshes a connection's Pipedream API token. It never
     * returns the token itself.
     * </pre>
     */
    public void refreshToken(dev.pdsidecar.v1.RefreshTokenRequest request,
        io.grpc.stub.StreamObserver<dev.pdsidecar.v1.RefreshTokenResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getRefreshTokenMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * ListAccounts lists a project's connected accounts, without credential values.
     * </pre>
     */
    public void listAccounts(dev.pdsidecar.v1.ListAccountsRequest request,
        io.grpc.stub.StreamObserver<dev.pdsidecar.v1.ListAccountsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncUnaryCall(
          getChannel().newCall(getListAccountsMethod(), getCallOptions()), request, responseObserver);
    }

    /**
     * <pre>
     * WatchCredentials streams an account's credentials: the first message at
     * once (what GetCredentials would answer), then one each time the
     * credentials change (Pipedream refreshed the source token, or a
     * rejected_access_token refetch found a new one). Account problems end the
     * stream with GetCredentials' status; Pipedream outages do not (the last
     * good value stands). A sidecar shutting down ends it with UNAVAILABLE:
     * reconnect.
     * </pre>
     */
    public void watchCredentials(dev.pdsidecar.v1.WatchCredentialsRequest request,
        io.grpc.stub.StreamObserver<dev.pdsidecar.v1.WatchCredentialsResponse> responseObserver) {
      io.grpc.stub.ClientCalls.asyncServerStreamingCall(
          getChannel().newCall(getWatchCredentialsMethod(), getCallOptions()), request, responseObserver);
    }
  }

  /**
   * A stub to allow clients to do synchronous rpc calls to service CredentialsService.
   * <pre>
   * CredentialsService hands out the credentials of Pipedream Connect accounts.
   * </pre>
   */
  public static final class CredentialsServiceBlockingV2Stub
      extends io.grpc.stub.AbstractBlockingStub<CredentialsServiceBlockingV2Stub> {
    private CredentialsServiceBlockingV2Stub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected CredentialsServiceBlockingV2Stub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new CredentialsServiceBlockingV2Stub(channel, callOptions);
    }

    /**
     * <pre>
     * GetCredentials returns an account's credentials under Airweave field names.
     * </pre>
     */
    public dev.pdsidecar.v1.GetCredentialsResponse getCredentials(dev.pdsidecar.v1.GetCredentialsRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getGetCredentialsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * ValidateAccount checks that an account can serve a source; problems with
     * the account come back as data, not as errors.
     * </pre>
     */
    public dev.pdsidecar.v1.ValidateAccountResponse validateAccount(dev.pdsidecar.v1.ValidateAccountRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getValidateAccountMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * RefreshToken refreshes a connection's Pipedream API token. It never
     * returns the token itself.
     * </pre>
     */
    public dev.pdsidecar.v1.RefreshTokenResponse refreshToken(dev.pdsidecar.v1.RefreshTokenRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getRefreshTokenMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * ListAccounts lists a project's connected accounts, without credential values.
     * </pre>
     */
    public dev.pdsidecar.v1.ListAccountsResponse listAccounts(dev.pdsidecar.v1.ListAccountsRequest request) throws io.grpc.StatusException {
      return io.grpc.stub.ClientCalls.blockingV2UnaryCall(
          getChannel(), getListAccountsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * WatchCredentials streams an account's credentials: the first message at
     * once (what GetCredentials would answer), then one each time the
     * credentials change (Pipedream refreshed the source token, or a
     * rejected_access_token refetch found a new one). Account problems end the
     * stream with GetCredentials' status; Pipedream outages do not (the last
     * good value stands). A sidecar shutting down ends it with UNAVAILABLE:
     * reconnect.
     * </pre>
     */
    @io.grpc.ExperimentalApi("https://github.com/grpc/grpc-java/issues/10918")
    public io.grpc.stub.BlockingClientCall<?, dev.pdsidecar.v1.WatchCredentialsResponse>
        watchCredentials(dev.pdsidecar.v1.WatchCredentialsRequest request) {
      return io.grpc.stub.ClientCalls.blockingV2ServerStreamingCall(
          getChannel(), getWatchCredentialsMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do limited synchronous rpc calls to service CredentialsService.
   * <pre>
   * CredentialsService hands out the credentials of Pipedream Connect accounts.
   * </pre>
   */
  public static final class CredentialsServiceBlockingStub
      extends io.grpc.stub.AbstractBlockingStub<CredentialsServiceBlockingStub> {
    private CredentialsServiceBlockingStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected CredentialsServiceBlockingStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new CredentialsServiceBlockingStub(channel, callOptions);
    }

    /**
     * <pre>
     * GetCredentials returns an account's credentials under Airweave field names.
     * </pre>
     */
    public dev.pdsidecar.v1.GetCredentialsResponse getCredentials(dev.pdsidecar.v1.GetCredentialsRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getGetCredentialsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * ValidateAccount checks that an account can serve a source; problems with
     * the account come back as data, not as errors.
     * </pre>
     */
    public dev.pdsidecar.v1.ValidateAccountResponse validateAccount(dev.pdsidecar.v1.ValidateAccountRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getValidateAccountMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * RefreshToken refreshes a connection's Pipedream API token. It never
     * returns the token itself.
     * </pre>
     */
    public dev.pdsidecar.v1.RefreshTokenResponse refreshToken(dev.pdsidecar.v1.RefreshTokenRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getRefreshTokenMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * ListAccounts lists a project's connected accounts, without credential values.
     * </pre>
     */
    public dev.pdsidecar.v1.ListAccountsResponse listAccounts(dev.pdsidecar.v1.ListAccountsRequest request) {
      return io.grpc.stub.ClientCalls.blockingUnaryCall(
          getChannel(), getListAccountsMethod(), getCallOptions(), request);
    }

    /**
     * <pre>
     * WatchCredentials streams an account's credentials: the first message at
     * once (what GetCredentials would answer), then one each time the
     * credentials change (Pipedream refreshed the source token, or a
     * rejected_access_token refetch found a new one). Account problems end the
     * stream with GetCredentials' status; Pipedream outages do not (the last
     * good value stands). A sidecar shutting down ends it with UNAVAILABLE:
     * reconnect.
     * </pre>
     */
    public java.util.Iterator<dev.pdsidecar.v1.WatchCredentialsResponse> watchCredentials(
        dev.pdsidecar.v1.WatchCredentialsRequest request) {
      return io.grpc.stub.ClientCalls.blockingServerStreamingCall(
          getChannel(), getWatchCredentialsMethod(), getCallOptions(), request);
    }
  }

  /**
   * A stub to allow clients to do ListenableFuture-style rpc calls to service CredentialsService.
   * <pre>
   * CredentialsService hands out the credentials of Pipedream Connect accounts.
   * </pre>
   */
  public static final class CredentialsServiceFutureStub
      extends io.grpc.stub.AbstractFutureStub<CredentialsServiceFutureStub> {
    private CredentialsServiceFutureStub(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      super(channel, callOptions);
    }

    @java.lang.Override
    protected CredentialsServiceFutureStub build(
        io.grpc.Channel channel, io.grpc.CallOptions callOptions) {
      return new CredentialsServiceFutureStub(channel, callOptions);
    }

    /**
     * <pre>
     * GetCredentials returns an account's credentials under Airweave field names.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.pdsidecar.v1.GetCredentialsResponse> getCredentials(
        dev.pdsidecar.v1.GetCredentialsRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getGetCredentialsMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * ValidateAccount checks that an account can serve a source; problems with
     * the account come back as data, not as errors.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.pdsidecar.v1.ValidateAccountResponse> validateAccount(
        dev.pdsidecar.v1.ValidateAccountRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getValidateAccountMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * RefreshToken refreshes a connection's Pipedream API token. It never
     * returns the token itself.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.pdsidecar.v1.RefreshTokenResponse> refreshToken(
        dev.pdsidecar.v1.RefreshTokenRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getRefreshTokenMethod(), getCallOptions()), request);
    }

    /**
     * <pre>
     * ListAccounts lists a project's connected accounts, without credential values.
     * </pre>
     */
    public com.google.common.util.concurrent.ListenableFuture<dev.pdsidecar.v1.ListAccountsResponse> listAccounts(
        dev.pdsidecar.v1.ListAccountsRequest request) {
      return io.grpc.stub.ClientCalls.futureUnaryCall(
          getChannel().newCall(getListAccountsMethod(), getCallOptions()), request);
    }
  }

  private static final int METHODID_GET_CREDENTIALS = 0;
  private static final int METHODID_VALIDATE_ACCOUNT = 1;
  private static final int METHODID_REFRESH_TOKEN = 2;
  private static final int METHODID_LIST_ACCOUNTS = 3;
  private static final int METHODID_WATCH_CREDENTIALS = 4;

  private static final class MethodHandlers<Req, Resp> implements
      io.grpc.stub.ServerCalls.UnaryMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ServerStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.ClientStreamingMethod<Req, Resp>,
      io.grpc.stub.ServerCalls.BidiStreamingMethod<Req, Resp> {
    private final AsyncService serviceImpl;
    private final int methodId;

    MethodHandlers(AsyncService serviceImpl, int methodId) {
      this.serviceImpl = serviceImpl;
      this.methodId = methodId;
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public void invoke(Req request, io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        case METHODID_GET_CREDENTIALS:
          serviceImpl.getCredentials((dev.pdsidecar.v1.GetCredentialsRequest) request,
              (io.grpc.stub.StreamObserver<dev.pdsidecar.v1.GetCredentialsResponse>) responseObserver);
          break;
        case METHODID_VALIDATE_ACCOUNT:
          serviceImpl.validateAccount((dev.pdsidecar.v1.ValidateAccountRequest) request,
              (io.grpc.stub.StreamObserver<dev.pdsidecar.v1.ValidateAccountResponse>) responseObserver);
          break;
        case METHODID_REFRESH_TOKEN:
          serviceImpl.refreshToken((dev.pdsidecar.v1.RefreshTokenRequest) request,
              (io.grpc.stub.StreamObserver<dev.pdsidecar.v1.RefreshTokenResponse>) responseObserver);
          break;
        case METHODID_LIST_ACCOUNTS:
          serviceImpl.listAccounts((dev.pdsidecar.v1.ListAccountsRequest) request,
              (io.grpc.stub.StreamObserver<dev.pdsidecar.v1.ListAccountsResponse>) responseObserver);
          break;
        case METHODID_WATCH_CREDENTIALS:
          serviceImpl.watchCredentials((dev.pdsidecar.v1.WatchCredentialsRequest) request,
              (io.grpc.stub.StreamObserver<dev.pdsidecar.v1.WatchCredentialsResponse>) responseObserver);
          break;
        default:
          throw new AssertionError();
      }
    }

    @java.lang.Override
    @java.lang.SuppressWarnings("unchecked")
    public io.grpc.stub.StreamObserver<Req> invoke(
        io.grpc.stub.StreamObserver<Resp> responseObserver) {
      switch (methodId) {
        default:
          throw new AssertionError();
      }
    }
  }

  public static final io.grpc.ServerServiceDefinition bindService(AsyncService service) {
    return io.grpc.ServerServiceDefinition.builder(getServiceDescriptor())
        .addMethod(
          getGetCredentialsMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.pdsidecar.v1.GetCredentialsRequest,
              dev.pdsidecar.v1.GetCredentialsResponse>(
                service, METHODID_GET_CREDENTIALS)))
        .addMethod(
          getValidateAccountMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.pdsidecar.v1.ValidateAccountRequest,
              dev.pdsidecar.v1.ValidateAccountResponse>(
                service, METHODID_VALIDATE_ACCOUNT)))
        .addMethod(
          getRefreshTokenMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.pdsidecar.v1.RefreshTokenRequest,
              dev.pdsidecar.v1.RefreshTokenResponse>(
                service, METHODID_REFRESH_TOKEN)))
        .addMethod(
          getListAccountsMethod(),
          io.grpc.stub.ServerCalls.asyncUnaryCall(
            new MethodHandlers<
              dev.pdsidecar.v1.ListAccountsRequest,
              dev.pdsidecar.v1.ListAccountsResponse>(
                service, METHODID_LIST_ACCOUNTS)))
        .addMethod(
          getWatchCredentialsMethod(),
          io.grpc.stub.ServerCalls.asyncServerStreamingCall(
            new MethodHandlers<
              dev.pdsidecar.v1.WatchCredentialsRequest,
              dev.pdsidecar.v1.WatchCredentialsResponse>(
                service, METHODID_WATCH_CREDENTIALS)))
        .build();
  }

  private static abstract class CredentialsServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoFileDescriptorSupplier, io.grpc.protobuf.ProtoServiceDescriptorSupplier {
    CredentialsServiceBaseDescriptorSupplier() {}

    @java.lang.Override
    public com.google.protobuf.Descriptors.FileDescriptor getFileDescriptor() {
      return dev.pdsidecar.v1.CredentialsProto.getDescriptor();
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.ServiceDescriptor getServiceDescriptor() {
      return getFileDescriptor().findServiceByName("CredentialsService");
    }
  }

  private static final class CredentialsServiceFileDescriptorSupplier
      extends CredentialsServiceBaseDescriptorSupplier {
    CredentialsServiceFileDescriptorSupplier() {}
  }

  private static final class CredentialsServiceMethodDescriptorSupplier
      extends CredentialsServiceBaseDescriptorSupplier
      implements io.grpc.protobuf.ProtoMethodDescriptorSupplier {
    private final java.lang.String methodName;

    CredentialsServiceMethodDescriptorSupplier(java.lang.String methodName) {
      this.methodName = methodName;
    }

    @java.lang.Override
    public com.google.protobuf.Descriptors.MethodDescriptor getMethodDescriptor() {
      return getServiceDescriptor().findMethodByName(methodName);
    }
  }

  private static volatile io.grpc.ServiceDescriptor serviceDescriptor;

  public static io.grpc.ServiceDescriptor getServiceDescriptor() {
    io.grpc.ServiceDescriptor result = serviceDescriptor;
    if (result == null) {
      synchronized (CredentialsServiceGrpc.class) {
        result = serviceDescriptor;
        if (result == null) {
          serviceDescriptor = result = io.grpc.ServiceDescriptor.newBuilder(SERVICE_NAME)
              .setSchemaDescriptor(new CredentialsServiceFileDescriptorSupplier())
              .addMethod(getGetCredentialsMethod())
              .addMethod(getValidateAccountMethod())
              .addMethod(getRefreshTokenMethod())
              .addMethod(getListAccountsMethod())
              .addMethod(getWatchCredentialsMethod())
              .build();
        }
      }
    }
    return result;
  }
}
