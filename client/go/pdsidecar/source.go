package pdsidecar

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
)

// The reconnect policy: a stream that ended with one of these codes is opened
// again; any other is the account's (or the caller's) problem and ends the
// watch, every later read returning it.
var reconnectCodes = map[codes.Code]bool{
	codes.Unavailable:       true, // sidecar restarting or stopping, Pipedream down
	codes.ResourceExhausted: true, // too many watchers, rate limited
	codes.DeadlineExceeded:  true,
	codes.Aborted:           true,
	codes.Canceled:          true, // by the server (we cancel only when closing)
}

const (
	// DefaultRejectTimeout bounds Reject when its context has no deadline.
	DefaultRejectTimeout = 30 * time.Second
	maxRetryInfoDelay    = 30 * time.Second
	// rememberedRejects is how many rejected tokens a source remembers, so
	// that one arriving late on the stream does not win back.
	rememberedRejects = 8
)

// SourceOption configures NewCredentialsSource.
type SourceOption func(*sourceSettings)

type sourceSettings struct {
	backoffInitial, backoffMax time.Duration
	rejectTimeout              time.Duration
}

// WithReconnectBackoff sets the backoff between stream reconnects: from
// initial, doubling, up to max (default 100 ms to 5 s). A RetryInfo delay
// from the sidecar overrides it.
func WithReconnectBackoff(initial, max time.Duration) SourceOption {
	return func(s *sourceSettings) { s.backoffInitial, s.backoffMax = initial, max }
}

// WithRejectTimeout bounds Reject when its context has no deadline
// (DefaultRejectTimeout if not given).
func WithRejectTimeout(d time.Duration) SourceOption {
	return func(s *sourceSettings) { s.rejectTimeout = d }
}

// snapshot is what every read loads: a value, or the error that ended the watch.
type snapshot struct {
	creds *Credentials
	err   *Error
}

// CredentialsSource holds an account's credentials current for a whole sync
// (go-spiffe's X509Source shape):
//
//   - Reads (AccessToken, Credentials) are one atomic load: no I/O, no lock,
//     safe from any goroutine.
//   - Rotation is pushed by the sidecar over WatchCredentials ahead of expiry;
//     there is no refresh to call. Updated signals each new value.
//   - A source 401: call Reject with the token the source refused; it returns
//     once the source holds a different value, or fails at the deadline.
//   - Sidecar restarts: the stream is opened again with backoff, honouring
//     RetryInfo; reads keep the last value meanwhile.
//   - Account problems (ACCOUNT_DEAD, PERMISSION_DENIED, ...) end the watch:
//     every later read returns that *Error, so the sync stops.
//   - Close stops the stream; later reads return CANCELLED.
type CredentialsSource struct {
	client   *Client
	ref      AccountRef
	settings sourceSettings

	current atomic.Pointer[snapshot]
	updated chan struct{}
	first   chan struct{} // closed once the first value or a final error is there
	cancel  context.CancelFunc
	done    chan struct{}
	closing sync.Once

	mu         sync.Mutex    // serialises changes; reads never take it
	changed    chan struct{} // closed and replaced at every change (Reject waits on it)
	rejected   []string
	lastRetry  *Error // the last error the stream was reopened after
	reconnects atomic.Int64
}

// NewCredentialsSource opens a WatchCredentials stream for ref and returns
// once its first value is there. ctx bounds only that wait (the client's
// default deadline when ctx has none); the stream lives until Close. It fails
// with the account's error (e.g. ACCOUNT_DEAD), or, when no value came in
// time, with the last error the stream was reopened after.
func NewCredentialsSource(ctx context.Context, client *Client, ref AccountRef, opts ...SourceOption) (*CredentialsSource, error) {
	settings := sourceSettings{backoffInitial: 100 * time.Millisecond, backoffMax: 5 * time.Second, rejectTimeout: DefaultRejectTimeout}
	for _, opt := range opts {
		opt(&settings)
	}
	started := time.Now()
	run, cancel := context.WithCancel(context.Background())
	s := &CredentialsSource{
		client: client, ref: ref, settings: settings,
		updated: make(chan struct{}, 1), first: make(chan struct{}), changed: make(chan struct{}),
		cancel: cancel, done: make(chan struct{}),
	}
	go s.run(run)

	if _, has := ctx.Deadline(); !has {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, client.settings.deadline)
		defer stop()
	}
	select {
	case <-s.first:
		if snap := s.current.Load(); snap.err != nil {
			_ = s.Close()
			return nil, snap.err
		}
		return s, nil
	case <-ctx.Done():
		_ = s.Close()
		return nil, s.noValue(ctx, time.Since(started))
	}
}

// noValue is the error of a source whose first value did not come in time.
func (s *CredentialsSource) noValue(ctx context.Context, waited time.Duration) *Error {
	s.mu.Lock()
	last := s.lastRetry
	s.mu.Unlock()
	within := fmt.Sprintf("no credentials from the sidecar within %s", waited.Round(time.Millisecond))
	if last != nil {
		e := *last
		e.Message = within + "; last: " + last.Message
		return &e
	}
	e := contextError(ctx, within)
	return s.client.failure(e, waited)
}

// AccessToken is the current access token, or the error that ended the watch.
func (s *CredentialsSource) AccessToken() (string, error) {
	snap := s.current.Load()
	if snap.err != nil {
		return "", snap.err
	}
	return snap.creds.AccessToken, nil
}

// Credentials is the current value, every field from the same message (read
// it once when several fields must belong together). Treat it as read-only.
func (s *CredentialsSource) Credentials() (*Credentials, error) {
	snap := s.current.Load()
	if snap.err != nil {
		return nil, snap.err
	}
	return snap.creds, nil
}

// Updated receives after each change of value (or the error that ended the
// watch). It holds at most one pending signal: read the value, not the count.
func (s *CredentialsSource) Updated() <-chan struct{} { return s.updated }

// Reconnects counts the times the stream was opened again.
func (s *CredentialsSource) Reconnects() int64 { return s.reconnects.Load() }

// Reject tells the source that the source API answered 401 to token: it asks
// the sidecar for another value (rejected_access_token) and returns once the
// source holds one that differs, or fails DEADLINE_EXCEEDED at ctx's deadline
// (DefaultRejectTimeout when ctx has none).
func (s *CredentialsSource) Reject(ctx context.Context, token string) (*Credentials, error) {
	snap := s.current.Load()
	if snap.err != nil {
		return nil, snap.err
	}
	if snap.creds.AccessToken != token {
		return snap.creds, nil // already rotated past it
	}
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.settings.rejectTimeout)
		defer cancel()
	}
	started := time.Now()
	s.mu.Lock()
	s.rejected = append(s.rejected, token)
	if len(s.rejected) > rememberedRejects {
		s.rejected = s.rejected[1:]
	}
	s.mu.Unlock()

	fresh, err := s.client.GetCredentials(ctx, s.ref, Rejecting(token))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if fresh.AccessToken != token && s.holdsLocked(token) {
		s.installLocked(&snapshot{creds: fresh})
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		snap, changed, holds := s.current.Load(), s.changed, s.holdsLocked(token)
		s.mu.Unlock()
		if snap.err != nil {
			return nil, snap.err
		}
		if !holds {
			return snap.creds, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, &Error{Code: codes.DeadlineExceeded, Message: fmt.Sprintf(
				"the source rejected the access token and the sidecar had no other within %s",
				time.Since(started).Round(time.Millisecond))}
		}
	}
}

// Close stops the stream and waits for it; later reads return CANCELLED.
// It does not close the Client.
func (s *CredentialsSource) Close() error {
	s.closing.Do(func() {
		s.cancel()
		<-s.done
		s.mu.Lock()
		s.installLocked(&snapshot{err: closedError()})
		s.mu.Unlock()
	})
	return nil
}

func (s *CredentialsSource) holdsLocked(token string) bool {
	snap := s.current.Load()
	return snap != nil && snap.err == nil && snap.creds.AccessToken == token
}

func (s *CredentialsSource) installLocked(snap *snapshot) {
	first := s.current.Load() == nil
	s.current.Store(snap)
	close(s.changed)
	s.changed = make(chan struct{})
	select {
	case s.updated <- struct{}{}:
	default:
	}
	if first {
		close(s.first)
	}
}

// offer installs a value from the stream, unless it is a token Reject was
// given arriving late (sent before the refetch) while the source holds another.
func (s *CredentialsSource) offer(creds *Credentials) {
	s.mu.Lock()
	defer s.mu.Unlock()
	current := s.current.Load()
	if current != nil && current.err != nil {
		return
	}
	stale := slices.Contains(s.rejected, creds.AccessToken)
	if stale && current != nil && current.creds.AccessToken != creds.AccessToken {
		return
	}
	s.installLocked(&snapshot{creds: creds})
}

func (s *CredentialsSource) run(ctx context.Context) {
	defer close(s.done)
	var delay time.Duration
	for {
		failure := s.watch(ctx, &delay)
		if ctx.Err() != nil {
			return
		}
		pause, again := s.reconnectDelay(failure, delay)
		if s.client.conn.GetState() == connectivity.Shutdown {
			failure, again = closedError(), false // the Client was closed under the source
		}
		s.mu.Lock()
		if !again {
			s.installLocked(&snapshot{err: failure})
			s.mu.Unlock()
			return
		}
		s.lastRetry = failure
		s.mu.Unlock()
		delay = pause
		s.reconnects.Add(1)
		timer := time.NewTimer(pause)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return
		}
	}
}

// watch holds one stream open, offering each value; it returns what ended it.
// A value received resets the backoff.
func (s *CredentialsSource) watch(ctx context.Context, delay *time.Duration) *Error {
	// wait-for-ready: a reopened stream waits for the restarted sidecar
	// instead of failing at once.
	stream, err := s.client.stub.WatchCredentials(ctx, s.ref.watchRequest(), grpc.WaitForReady(true))
	if err != nil {
		return asError(err)
	}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return &Error{Code: codes.Unavailable, Message: "the sidecar ended the watch"}
		}
		if err != nil {
			return asError(err)
		}
		s.offer(newCredentials(resp.GetCredentials(), resp.GetExpiresAt(), resp.GetAccount()))
		*delay = 0
	}
}

// reconnectDelay is the pause before opening the stream again, and false when
// the failure ends the watch.
func (s *CredentialsSource) reconnectDelay(failure *Error, previous time.Duration) (time.Duration, bool) {
	switch {
	case !reconnectCodes[failure.Code]:
		return 0, false
	case failure.Reason == "SIDECAR_STOPPING":
		return 0, true // wait-for-ready holds the new stream until the next sidecar answers
	case failure.RetryDelay > 0:
		return min(failure.RetryDelay, maxRetryInfoDelay), true
	}
	return min(max(previous*2, s.settings.backoffInitial), s.settings.backoffMax), true
}

// String names the account and the state, never a value.
func (s *CredentialsSource) String() string {
	state := "current"
	if snap := s.current.Load(); snap.err != nil {
		state = "failed: " + CodeName(snap.err.Code)
	}
	return fmt.Sprintf("CredentialsSource(%s/%s, %s)", s.ref.ProjectID, s.ref.AccountID, state)
}
