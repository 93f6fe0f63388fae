// Command pdsidecar-conformance is the Go driver of the conformance suite
// (tests/conformance, client/SPEC.md): the scenarios get, list, error, hold,
// reject and bench on the pdsidecar library alone.
//
//	pdsidecar-conformance SCENARIO --target T [flags]
//
// Each stdout line is one JSON object, the last one the result; tokens are
// printed only as fingerprints (the first 12 hex characters of their SHA-256).
// Exit 0 whenever the scenario ran to its end, even if it observed an error
// (that is data); 2 for bad flags.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/pdsidecar/pdsidecar/client/go/pdsidecar"
)

type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

type args struct {
	target, token, ca, cert, key, serverName     string
	project, environment, externalUserID, source string
	accounts, fields                             repeated
	deadlineMS, pageSize, intervalMS, rejectMS   int
	reads                                        int
	durationS                                    float64
	waitForReady                                 bool
	sourceAPI                                    string
}

type result = map[string]any

func fp(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:12]
}

func emit(line result) {
	data, _ := json.Marshal(line)
	fmt.Println(string(data))
}

func errorOf(err error, started time.Time) result {
	var e *pdsidecar.Error
	if !errors.As(err, &e) {
		panic(err) // not the library's typed error: the driver broke
	}
	line := result{
		"code": pdsidecar.CodeName(e.Code), "reason": nil, "retry_after_ms": nil, "hint": nil,
		"violations": []result{}, "elapsed_ms": time.Since(started).Milliseconds(),
	}
	if e.Reason != "" {
		line["reason"] = e.Reason
	}
	if e.RetryDelay > 0 {
		line["retry_after_ms"] = e.RetryDelay.Milliseconds()
	}
	if e.Hint != "" {
		line["hint"] = e.Hint
	}
	violations := []result{}
	for _, v := range e.Violations {
		violations = append(violations, result{"field": v.Field, "description": v.Description})
	}
	line["violations"] = violations
	return line
}

func parse(argv []string) (string, args, error) {
	var a args
	if len(argv) == 0 {
		return "", a, errors.New("missing scenario")
	}
	fs := flag.NewFlagSet("pdsidecar-conformance", flag.ContinueOnError)
	fs.StringVar(&a.target, "target", "", "host:port or unix:/abs/path")
	fs.StringVar(&a.token, "token", "", "the sidecar's API token")
	fs.StringVar(&a.ca, "ca", "", "TLS CA (PEM file)")
	fs.StringVar(&a.cert, "cert", "", "client certificate (PEM file)")
	fs.StringVar(&a.key, "key", "", "client key (PEM file)")
	fs.StringVar(&a.serverName, "server-name", "", "name expected in the server certificate")
	fs.StringVar(&a.project, "project", "", "project id")
	fs.StringVar(&a.environment, "environment", "production", "production or development")
	fs.Var(&a.accounts, "account", "account id (repeatable for bench)")
	fs.StringVar(&a.externalUserID, "external-user-id", "", "external user id")
	fs.StringVar(&a.source, "source", "", "source")
	fs.Var(&a.fields, "field", "required field (repeatable)")
	fs.IntVar(&a.deadlineMS, "deadline-ms", 5000, "default per-call deadline")
	fs.BoolVar(&a.waitForReady, "wait-for-ready", false, "turn wait-for-ready on")
	fs.IntVar(&a.pageSize, "page-size", 0, "list: page size")
	fs.Float64Var(&a.durationS, "duration-s", 20, "hold, bench: how long")
	fs.IntVar(&a.intervalMS, "interval-ms", 20, "hold: read every")
	fs.StringVar(&a.sourceAPI, "source-api", "", "hold: the source API to call with the token")
	fs.IntVar(&a.rejectMS, "reject-timeout-ms", 10000, "reject: timeout")
	fs.IntVar(&a.reads, "reads", 1_000_000, "bench: reads to time")
	if err := fs.Parse(argv[1:]); err != nil {
		return "", a, err
	}
	if a.target == "" {
		return "", a, errors.New("--target is required")
	}
	return argv[0], a, nil
}

func (a args) ref(account string) pdsidecar.AccountRef {
	env := pdsidecar.Production
	if a.environment == "development" {
		env = pdsidecar.Development
	}
	return pdsidecar.AccountRef{
		ProjectID: a.project, AccountID: account, Source: a.source, Environment: env,
		ExternalUserID: a.externalUserID, RequiredFields: a.fields,
	}
}

func (a args) account() string {
	if len(a.accounts) == 0 {
		return ""
	}
	return a.accounts[0]
}

func (a args) dial() (*pdsidecar.Client, error) {
	opts := []pdsidecar.Option{
		pdsidecar.WithDefaultDeadline(time.Duration(a.deadlineMS) * time.Millisecond),
		pdsidecar.WithWaitForReady(a.waitForReady),
	}
	if a.ca != "" {
		opts = append(opts, pdsidecar.WithTLS(a.ca))
	}
	if a.cert != "" || a.key != "" {
		opts = append(opts, pdsidecar.WithClientCertificate(a.cert, a.key))
	}
	if a.serverName != "" {
		opts = append(opts, pdsidecar.WithServerName(a.serverName))
	}
	if a.token != "" {
		opts = append(opts, pdsidecar.WithAPIToken(a.token))
	}
	return pdsidecar.Dial(context.Background(), a.target, opts...)
}

func get(ctx context.Context, c *pdsidecar.Client, a args) (result, error) {
	creds, err := c.GetCredentials(ctx, a.ref(a.account()))
	if err != nil {
		return nil, err
	}
	fields := make([]string, 0, len(creds.Fields))
	for name := range creds.Fields {
		fields = append(fields, name)
	}
	slices.Sort(fields)
	return result{"fields": fields, "token_fp": fp(creds.AccessToken)}, nil
}

func list(ctx context.Context, c *pdsidecar.Client, a args) (result, error) {
	query := pdsidecar.AccountQuery{
		ProjectID: a.project, Environment: a.ref("").Environment, Source: a.source,
		ExternalUserID: a.externalUserID, PageSize: int32(a.pageSize),
	}
	var ids []string
	pages := 0
	for page, err := range c.ListAccounts(ctx, query) {
		if err != nil {
			return nil, err
		}
		pages++
		for _, account := range page {
			ids = append(ids, account.GetAccountId())
		}
	}
	slices.Sort(ids)
	return result{"count": len(ids), "pages": pages, "ids_fp": fp(strings.Join(ids, ","))}, nil
}

func sourceStatus(url, token string) int {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		panic(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "source API: %v\n", err)
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func hold(ctx context.Context, c *pdsidecar.Client, a args) (result, error) {
	source, err := pdsidecar.NewCredentialsSource(ctx, c, a.ref(a.account()))
	if err != nil {
		return nil, err
	}
	defer source.Close()
	emit(result{"event": "ready"})
	counts := map[string]int{"reads": 0, "read_errors": 0, "source_ok": 0, "source_401": 0, "rejects": 0}
	tokens := map[string]bool{}
	interval := time.Duration(a.intervalMS) * time.Millisecond
	end := time.Now().Add(time.Duration(a.durationS * float64(time.Second)))
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for time.Now().Before(end) {
		counts["reads"]++
		token, err := source.AccessToken()
		if err != nil {
			counts["read_errors"]++
			fmt.Fprintf(os.Stderr, "read error: %v\n", err)
		} else {
			tokens[token] = true
			if a.sourceAPI != "" {
				if sourceStatus(a.sourceAPI, token) == http.StatusOK {
					counts["source_ok"]++
				} else {
					counts["source_401"]++
					counts["rejects"]++
					rctx, cancel := context.WithTimeout(ctx, time.Duration(a.rejectMS)*time.Millisecond)
					if _, err := source.Reject(rctx, token); err != nil {
						fmt.Fprintf(os.Stderr, "reject failed: %v\n", err)
					}
					cancel()
				}
			}
		}
		<-ticker.C
	}
	out := result{"distinct_tokens": len(tokens)}
	for k, v := range counts {
		out[k] = v
	}
	return out, nil
}

func reject(ctx context.Context, c *pdsidecar.Client, a args) (result, error) {
	source, err := pdsidecar.NewCredentialsSource(ctx, c, a.ref(a.account()))
	if err != nil {
		return nil, err
	}
	defer source.Close()
	before, err := source.AccessToken()
	if err != nil {
		return nil, err
	}
	emit(result{"event": "ready", "token_fp": fp(before)})
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	started := time.Now()
	rctx, cancel := context.WithTimeout(ctx, time.Duration(a.rejectMS)*time.Millisecond)
	defer cancel()
	creds, err := source.Reject(rctx, before)
	if err != nil {
		return nil, err
	}
	return result{
		"before_fp": fp(before), "after_fp": fp(creds.AccessToken),
		"changed": creds.AccessToken != before, "elapsed_ms": time.Since(started).Milliseconds(),
	}, nil
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// bench: one source per --account; the cost of a read, the heap per source,
// and when each rotated token was first readable.
func bench(ctx context.Context, c *pdsidecar.Client, a args) (result, error) {
	// One source first, held through the measurement: the connection and its
	// buffers are the client's, not each source's.
	warm, err := pdsidecar.NewCredentialsSource(ctx, c, a.ref(a.account()))
	if err != nil {
		return nil, err
	}
	defer warm.Close()
	before := heap()
	held := map[string]*pdsidecar.CredentialsSource{}
	for _, account := range a.accounts {
		source, err := pdsidecar.NewCredentialsSource(ctx, c, a.ref(account))
		if err != nil {
			return nil, err
		}
		defer source.Close()
		held[account] = source
	}
	perObject := int64(heap()-before) / int64(max(len(held), 1))
	first := held[a.accounts[0]]
	started := time.Now()
	for range a.reads {
		_, _ = first.AccessToken()
	}
	readNS := float64(time.Since(started).Nanoseconds()) / float64(a.reads)
	old := map[string]string{}
	for account, source := range held {
		old[account], _ = source.AccessToken()
	}
	emit(result{"event": "ready", "read_ns": readNS, "bytes_per_object": perObject})
	changed := map[string]int64{}
	end := time.Now().Add(time.Duration(a.durationS * float64(time.Second)))
	for len(changed) < len(held) && time.Now().Before(end) {
		for account, source := range held {
			if _, done := changed[account]; done {
				continue
			}
			if token, _ := source.AccessToken(); token != old[account] {
				changed[account] = time.Now().UnixMilli()
			}
		}
		time.Sleep(time.Millisecond)
	}
	return result{"read_ns": readNS, "bytes_per_object": perObject, "changed_at_ms": changed}, nil
}

var scenarios = map[string]func(context.Context, *pdsidecar.Client, args) (result, error){
	"get": get, "list": list, "error": get, "hold": hold, "reject": reject, "bench": bench,
}

func main() {
	scenario, a, err := parse(os.Args[1:])
	run, known := scenarios[scenario]
	if err == nil && !known {
		err = fmt.Errorf("unknown scenario %q", scenario)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pdsidecar-conformance: %v\n", err)
		os.Exit(2)
	}
	client, err := a.dial()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pdsidecar-conformance: %v\n", err)
		os.Exit(2)
	}
	defer client.Close()
	line := result{"lang": "go", "scenario": scenario, "ok": true, "error": nil}
	started := time.Now()
	out, err := run(context.Background(), client, a)
	if err != nil {
		line["ok"], line["error"] = false, errorOf(err, started)
	}
	for k, v := range out {
		line[k] = v
	}
	emit(line)
}
