// Command pdsidecar-example calls the pdsidecar sidecar through the pdsidecar
// library and prints one line per answer, in the format every language's
// example shares:
//
//	credentials access_token=<token> fields=<names,...>
//	valid=<true|false> problems=<REASON,...>
//	refreshed=<true|false> expires_at=<RFC 3339, UTC>
//	watch access_token=<token> expires_at=<RFC 3339, UTC>
//	error code=<GRPC_CODE> reason=<ErrorInfo reason or ->
//
// A call the sidecar answers with a retry delay (RetryInfo) is tried again
// after it, up to --attempts times. watch holds a CredentialsSource and prints
// its first value and each new one (--count N: stop after N lines); the
// library reconnects across sidecar restarts.
//
// Usage (flags fall back to PDSIDECAR_TARGET, default 127.0.0.1:50051,
// PDSIDECAR_PROJECT, PDSIDECAR_ACCOUNT, PDSIDECAR_SOURCE, PDSIDECAR_CONNECTION):
//
//	pdsidecar-example [--target T] {get|validate|refresh|watch} [flags]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pdsidecar/pdsidecar/client/go/pdsidecar"
	pdsidecarv1 "github.com/pdsidecar/pdsidecar/client/go/pdsidecarv1"
)

const usage = "usage: pdsidecar-example [--target HOST:PORT] {get|validate|refresh|watch} [flags]"

type options struct {
	target, project, account, source, connection string
	force                                        bool
	attempts, count                              int
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func parse(fs *flag.FlagSet, args []string) (string, options, error) {
	var o options
	fs.StringVar(&o.target, "target", env("PDSIDECAR_TARGET", "127.0.0.1:50051"), "sidecar address, or unix:/path")
	fs.StringVar(&o.project, "project", env("PDSIDECAR_PROJECT", ""), "Pipedream project id (proj_...)")
	fs.StringVar(&o.account, "account", env("PDSIDECAR_ACCOUNT", ""), "connected account id (apn_...)")
	fs.StringVar(&o.source, "source", env("PDSIDECAR_SOURCE", ""), "source short name, e.g. notion")
	fs.StringVar(&o.connection, "connection", env("PDSIDECAR_CONNECTION", "default"), "connection name")
	fs.BoolVar(&o.force, "force", false, "refresh: refresh even when not yet due")
	fs.IntVar(&o.attempts, "attempts", 3, "attempts per call when the sidecar sends RetryInfo")
	fs.IntVar(&o.count, "count", 0, "watch: stop after this many values (0: never)")
	// Flags may come before and after the command.
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		return "", o, errors.Join(err, errors.New("missing command"))
	}
	command := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil || fs.NArg() != 0 {
		return "", o, errors.Join(err, errors.New("one command expected"))
	}
	return command, o, nil
}

// withRetry waits out a RetryInfo delay: the library leaves that to the caller.
func withRetry[T any](o options, call func() (T, error)) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := call()
		var e *pdsidecar.Error
		if err == nil || !errors.As(err, &e) || e.RetryDelay == 0 || attempt >= o.attempts {
			return v, err
		}
		fmt.Fprintf(os.Stderr, "retrying in %.3fs: code=%s reason=%s\n", e.RetryDelay.Seconds(), pdsidecar.CodeName(e.Code), e.Reason)
		time.Sleep(e.RetryDelay)
	}
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}

func run(ctx context.Context, client *pdsidecar.Client, command string, o options) error {
	ref := pdsidecar.AccountRef{ProjectID: o.project, AccountID: o.account, Source: o.source, Connection: o.connection}
	switch command {
	case "get":
		c, err := withRetry(o, func() (*pdsidecar.Credentials, error) { return client.GetCredentials(ctx, ref) })
		if err != nil {
			return err
		}
		fields := slices.Sorted(maps.Keys(c.Fields))
		fmt.Printf("credentials access_token=%s fields=%s\n", c.AccessToken, strings.Join(fields, ","))
	case "validate":
		r, err := withRetry(o, func() (*pdsidecarv1.ValidateAccountResponse, error) { return client.ValidateAccount(ctx, ref) })
		if err != nil {
			return err
		}
		var problems []string
		for _, p := range r.GetProblems() {
			problems = append(problems, strings.TrimPrefix(p.GetReason().String(), "REASON_"))
		}
		fmt.Printf("valid=%t problems=%s\n", r.GetValid(), strings.Join(problems, ","))
	case "refresh":
		r, err := withRetry(o, func() (*pdsidecarv1.RefreshTokenResponse, error) {
			return client.RefreshToken(ctx, o.connection, o.force)
		})
		if err != nil {
			return err
		}
		fmt.Printf("refreshed=%t expires_at=%s\n", r.GetRefreshed(), rfc3339(r.GetExpiresAt().AsTime()))
	case "watch":
		return watch(ctx, client, ref, o.count)
	default:
		return fmt.Errorf("unknown command %q", command)
	}
	return nil
}

// watch prints the source's value each time it changes; no stream handling here.
func watch(ctx context.Context, client *pdsidecar.Client, ref pdsidecar.AccountRef, count int) error {
	source, err := pdsidecar.NewCredentialsSource(ctx, client, ref)
	if err != nil {
		return err
	}
	defer source.Close()
	last := ""
	for printed := 0; count == 0 || printed < count; <-source.Updated() {
		c, err := source.Credentials()
		if err != nil {
			return err // the account's problem ended the watch
		}
		if c.AccessToken != last {
			last = c.AccessToken
			fmt.Printf("watch access_token=%s expires_at=%s\n", c.AccessToken, rfc3339(c.ExpiresAt))
			printed++
		}
	}
	return nil
}

func main() {
	fs := flag.NewFlagSet("pdsidecar-example", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	command, o, err := parse(fs, os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		fmt.Println(usage + "\ncommands: get, validate, refresh, watch; flags:")
		fs.SetOutput(os.Stdout)
		fs.PrintDefaults()
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pdsidecar-example: %v\n%s\n", err, usage)
		os.Exit(2)
	}
	client, err := pdsidecar.Dial(context.Background(), o.target, pdsidecar.WithWaitForReady(false))
	if err != nil {
		fmt.Fprintf(os.Stderr, "pdsidecar-example: %v\n", err)
		os.Exit(2)
	}
	err = run(context.Background(), client, command, o)
	client.Close()
	var e *pdsidecar.Error
	if errors.As(err, &e) {
		reason := e.Reason
		if reason == "" {
			reason = "-"
		}
		fmt.Printf("error code=%s reason=%s\n", pdsidecar.CodeName(e.Code), reason)
		fmt.Fprintf(os.Stderr, "message: %s\n", e)
		for _, v := range e.Violations {
			fmt.Fprintf(os.Stderr, "violation: %s: %s\n", v.Field, v.Description)
		}
		os.Exit(1)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pdsidecar-example: %v\n%s\n", err, usage)
		os.Exit(2)
	}
}
