package pdsidecar

import (
	"fmt"
	"maps"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pdsidecar/pdsidecar/client/go/pdsidecarv1"
)

// Environment is the Pipedream project environment an account lives in.
type Environment = pb.Environment

const (
	Production  = pb.Environment_ENVIRONMENT_PRODUCTION
	Development = pb.Environment_ENVIRONMENT_DEVELOPMENT
)

// AccountRef names what to fetch: an account's credentials for a source.
// Environment 0 means production; Connection "" the sidecar's default
// Pipedream OAuth client; RequiredFields makes the call fail without them.
type AccountRef struct {
	ProjectID      string
	AccountID      string
	Source         string
	Connection     string
	Environment    Environment
	ExternalUserID string
	RequiredFields []string
	OptionalFields []string
}

func (r AccountRef) account() *pb.AccountRef {
	return &pb.AccountRef{
		Connection: r.Connection, ProjectId: r.ProjectID, AccountId: r.AccountID,
		Environment: r.Environment, ExternalUserId: r.ExternalUserID,
	}
}

func (r AccountRef) getRequest() *pb.GetCredentialsRequest {
	return &pb.GetCredentialsRequest{
		Account: r.account(), Source: r.Source,
		RequiredFields: r.RequiredFields, OptionalFields: r.OptionalFields,
	}
}

func (r AccountRef) watchRequest() *pb.WatchCredentialsRequest {
	return &pb.WatchCredentialsRequest{
		Account: r.account(), Source: r.Source,
		RequiredFields: r.RequiredFields, OptionalFields: r.OptionalFields,
	}
}

// AccountQuery selects the accounts ListAccounts returns.
type AccountQuery struct {
	ProjectID      string
	Environment    Environment
	Source         string // only accounts of this source's app; "" for all
	ExternalUserID string
	Connection     string
	PageSize       int32  // 0: the sidecar's default
	PageToken      string // where to start: a next_page_token kept from before; "" for the first page
}

func (q AccountQuery) proto() *pb.ListAccountsRequest {
	return &pb.ListAccountsRequest{
		Connection: q.Connection, ProjectId: q.ProjectID, Environment: q.Environment,
		Source: q.Source, ExternalUserId: q.ExternalUserID, PageSize: q.PageSize,
		PageToken: q.PageToken,
	}
}

// Credentials is one consistent value of an account's credentials. It is
// shared by every reader of a CredentialsSource: treat it as read-only.
// Printing it shows no value.
type Credentials struct {
	// AccessToken is Fields["access_token"].
	AccessToken string
	// Fields holds every credential under Airweave field names.
	Fields map[string]string
	// ExpiresAt is when the source token expires; zero when Pipedream reports none.
	ExpiresAt time.Time
	Account   *pb.AccountInfo
}

func newCredentials(fields map[string]string, expiresAt *timestamppb.Timestamp, account *pb.AccountInfo) *Credentials {
	c := &Credentials{AccessToken: fields["access_token"], Fields: maps.Clone(fields), Account: account}
	if expiresAt != nil {
		c.ExpiresAt = expiresAt.AsTime()
	}
	return c
}

// String names the fields, never their values.
func (c *Credentials) String() string {
	return fmt.Sprintf("Credentials{fields: %d, expires_at: %s}", len(c.Fields), c.ExpiresAt.Format(time.RFC3339))
}

// GoString keeps %#v from printing values too.
func (c *Credentials) GoString() string { return c.String() }
