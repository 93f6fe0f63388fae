package pdsidecar

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of the sidecar's errors.
const Domain = "pdsidecar"

// Error is every failed call, read from the rich gRPC status:
//
//	var e *pdsidecar.Error
//	if errors.As(err, &e) && e.Reason == "ACCOUNT_DEAD" { ... }
//
// It never holds a credential value.
type Error struct {
	Code    codes.Code
	Message string
	// Reason is the ErrorInfo reason from the sidecar's error table
	// ("ACCOUNT_NOT_FOUND", "RATE_LIMITED", ...); "" when the sidecar sent none
	// (the call never reached it, or a deadline passed).
	Reason string
	// Metadata is ErrorInfo's metadata (account, connection, missing fields).
	Metadata map[string]string
	// RetryDelay is RetryInfo's delay: wait that long before trying again.
	// 0 when the sidecar sent no RetryInfo (do not retry blindly).
	RetryDelay time.Duration
	Violations []FieldViolation
	// Hint says, naming the target, why a call that never reached the sidecar
	// failed (gRPC's last connection error and what it most likely means).
	Hint string
}

// FieldViolation is one BadRequest field violation.
type FieldViolation struct {
	Field       string
	Description string
}

func (e *Error) Error() string {
	if e.Hint != "" {
		return CodeName(e.Code) + ": " + e.Hint // it says what the message says, and more
	}
	text := CodeName(e.Code) + ": " + e.Message
	if e.Reason != "" {
		text += " [" + e.Reason + "]"
	}
	return text
}

// GRPCStatus lets status.Code and status.FromError read an *Error.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// CodeName is the canonical gRPC name of a code ("CANCELLED"; Go's String()
// says "Canceled").
func CodeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return c.String()
}

// asError reads any error a gRPC call returned (or a context error) as an *Error.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	e = &Error{Code: st.Code(), Message: st.Message()}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == Domain {
				e.Reason, e.Metadata = d.GetReason(), d.GetMetadata()
			}
		case *errdetails.RetryInfo:
			e.RetryDelay = d.GetRetryDelay().AsDuration()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.Violations = append(e.Violations, FieldViolation{v.GetField(), v.GetDescription()})
			}
		}
	}
	return e
}

// mayBeUnconnected says whether a failure may come from a channel that never
// connected: the sidecar sends a reason with every error it answers.
func mayBeUnconnected(e *Error) bool {
	return e.Reason == "" && (e.Code == codes.Unavailable || e.Code == codes.DeadlineExceeded)
}

// lastError is gRPC's own connection error inside an UNAVAILABLE message:
// its innermost description ("transport: Error while dialing: dial tcp ...:
// connect: connection refused"), without the retry and status wrapping.
func lastError(message string) string {
	if i := strings.LastIndex(message, "desc = "); i >= 0 {
		message = strings.Trim(message[i+len("desc = "):], `"`)
	}
	return message
}

// connectionAdvice says what a connection error most likely means.
func connectionAdvice(lastErr string, tls bool) string {
	text := strings.ToLower(lastErr)
	closed := strings.Contains(text, "eof") || strings.Contains(text, "connection reset") ||
		strings.Contains(text, "connection closed")
	switch {
	case strings.Contains(text, "connection refused"):
		return "nothing listens there: is 'pdsidecar serve' running on this address"
	case strings.Contains(text, "http/1") || strings.Contains(text, "http2: frame too large"):
		return "an HTTP/1 server answered (the metrics port?), not the sidecar's gRPC listener"
	case strings.Contains(text, "certificate signed by unknown authority") ||
		strings.Contains(text, "x509:"):
		return "the server certificate is not signed by the CA given with WithTLS (--tls-ca)"
	case strings.Contains(text, "first record does not look like a tls handshake"):
		return "the listener is plaintext: drop the TLS options"
	case strings.Contains(text, "certificate required") || strings.Contains(text, "bad certificate"):
		return "the listener wants a client certificate signed by its --tls-client-ca " +
			"(WithClientCertificate)"
	case closed && !tls:
		return "the server closed the connection at once: a TLS listener does that to " +
			"plaintext clients; pass its CA with WithTLS (--tls-ca)"
	case closed:
		return "the server closed the connection during the TLS handshake: a listener " +
			"started with --tls-client-ca wants a client certificate (WithClientCertificate)"
	case strings.Contains(text, "no such file"):
		return "no Unix socket at that path: is 'pdsidecar serve' listening there"
	case strings.Contains(text, "permission denied"):
		return "the socket's file mode keeps this user out (see serve --socket-mode)"
	}
	return ""
}

// notConnected is the hint of a call that failed because the channel never connected.
func notConnected(target string, waited time.Duration, lastErr string, tls, waitForReady bool) string {
	found := lastErr
	if found == "" {
		found = "none yet (still connecting: no answer from the address)"
	}
	text := fmt.Sprintf("could not connect to the sidecar at %s; last connection error: %s", target, found)
	if waitForReady {
		text = fmt.Sprintf("waited %s for the sidecar at %s to become ready (wait-for-ready), "+
			"but it never connected; last connection error: %s", waited.Round(time.Millisecond), target, found)
	}
	if advice := connectionAdvice(lastErr, tls); advice != "" {
		text += "; " + advice
	}
	if waitForReady {
		text += ". Pass WithWaitForReady(false) to fail fast instead of waiting"
	}
	return text
}

// closedError is what a closed CredentialsSource's reads return.
func closedError() *Error {
	return &Error{Code: codes.Canceled, Message: "the credentials source is closed"}
}

func contextError(ctx context.Context, what string) *Error {
	e := asError(ctx.Err())
	e.Message = what + ": " + e.Message
	return e
}
