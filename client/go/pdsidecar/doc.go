// Package pdsidecar is the Go client of the pdsidecar credentials sidecar,
// built on the generated pdsidecarv1 stubs. It follows client/SPEC.md, the one
// client behaviour every language's library shares.
//
// [Dial] connects (TCP host:port or unix:/path; TLS, mutual TLS, an API token),
// and the [Client]'s methods send every call with a default deadline, retry
// UNAVAILABLE through gRPC's retry policy inside it, and return failures as an
// [*Error] (errors.As) carrying the gRPC code, the ErrorInfo reason, the
// RetryInfo delay, BadRequest violations, and, when the call never reached the
// sidecar, a hint naming the target.
//
// [NewCredentialsSource] is the always-current credentials object, in the shape
// of go-spiffe's workloadapi.X509Source: it returns once the first value is
// there, keeps it current over a WatchCredentials stream that reconnects with
// backoff, and its reads ([CredentialsSource.AccessToken],
// [CredentialsSource.Credentials]) are one atomic load with no I/O, safe from
// any goroutine.
package pdsidecar
