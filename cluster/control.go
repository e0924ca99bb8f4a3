package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/checkpoint/coordinator"
	"github.com/weirstream/weir/internal/secret"
	"github.com/weirstream/weir/metrics"
	"github.com/weirstream/weir/runtime"
)

// The control plane between the job manager and the task managers is one
// gRPC bidirectional stream per task manager, opened by the task manager
// (service weir.control.v1.JobManager, method Connect). Messages are
// ctlMsg values encoded as JSON (content subtype "weirjson"); the service
// is declared by hand, so no generated code is involved. The first message
// of a task manager is a register; then it sends heartbeats and its
// tasks' reports, and receives deployments, cancellations and mail.
//
// Every stream carries the cluster's token in the "weir-token" metadata;
// a stream without the right token is refused (codes.Unauthenticated) and
// the refusal logged with the peer's address. A connection that has not
// registered a task manager within ClusterConfig.RegistrationTimeout is
// closed (controlconn.go).

const (
	ctlServiceName = "weir.control.v1.JobManager"
	ctlMethod      = "/" + ctlServiceName + "/Connect"
	ctlCodecName   = "weirjson"
	tokenHeader    = "weir-token"
)

// ctlVersion is the version of the control messages. A task manager sends
// it in its registration; a job manager refuses another version, so that
// processes of different weir builds never exchange messages whose fields
// they read differently. Bump it when a message changes meaning.
// Version 3 added the subtasks' metrics to heartbeats; version 4 the job
// manager's heartbeats, without which a task manager of version 4 leaves.
const ctlVersion = 4

type msgKind string

const (
	// task manager → job manager
	msgRegister    msgKind = "register"
	msgHeartbeat   msgKind = "heartbeat"
	msgAck         msgKind = "ack"
	msgDecline     msgKind = "decline"
	msgSourceEnded msgKind = "source-ended"
	msgFinished    msgKind = "finished"
	msgFailed      msgKind = "failed"
	msgCancelled   msgKind = "cancelled"
	// job manager → task manager (and msgHeartbeat)
	msgRegistered msgKind = "registered"
	msgDeploy     msgKind = "deploy"
	msgCancel     msgKind = "cancel"
	msgMail       msgKind = "mail"
	msgJobEnded   msgKind = "job-ended"
)

// ctlMsg is every control message; Kind says which fields are set.
type ctlMsg struct {
	Kind    msgKind `json:"kind"`
	Attempt int     `json:"attempt,omitempty"`
	// register
	Version  int    `json:"version,omitempty"`
	Name     string `json:"name,omitempty"`
	Slots    int    `json:"slots,omitempty"`
	DataAddr string `json:"dataAddr,omitempty"`
	Job      string `json:"job,omitempty"`
	// reports and mail
	Task checkpoint.TaskID        `json:"task"`
	ID   checkpoint.ID            `json:"id,omitempty"`
	Snap *checkpoint.TaskSnapshot `json:"snap,omitempty"`
	Err  string                   `json:"err,omitempty"`
	Mail *runtime.Mail            `json:"mail,omitempty"`
	// decline: why; failed: what kind of failure
	Why   coordinator.DeclineReason `json:"why,omitempty"`
	Class runtime.FailureClass      `json:"class,omitempty"`
	// deploy
	Deploy *deployMsg `json:"deploy,omitempty"`
	// heartbeat: the metrics of the task manager's subtasks of Attempt
	Metrics []metrics.TaskSample `json:"metrics,omitempty"`
}

// deployMsg tells a task manager which subtasks of an attempt it runs and
// where every other subtask runs.
type deployMsg struct {
	Self  int      `json:"self"`
	Where []placed `json:"where"`
	Addrs []string `json:"addrs"`
	// Restore is the checkpoint to restore (nil: fresh start);
	// FromJobStorage says it is in the job's checkpoint storage (else in
	// the configured restore storage); Owned that the job owns it.
	Restore        *checkpoint.Metadata `json:"restore,omitempty"`
	FromJobStorage bool                 `json:"fromJobStorage,omitempty"`
	Owned          bool                 `json:"owned,omitempty"`
}

type placed struct {
	Task    checkpoint.TaskID `json:"task"`
	Process int               `json:"process"`
}

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
func (jsonCodec) Name() string                       { return ctlCodecName }

func init() { encoding.RegisterCodec(jsonCodec{}) }

var ctlServiceDesc = grpc.ServiceDesc{
	ServiceName: ctlServiceName,
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Connect",
		Handler:       func(srv any, stream grpc.ServerStream) error { return srv.(*JobManager).connect(stream) },
		ServerStreams: true,
		ClientStreams: true,
	}},
}

// checkToken authenticates a control stream.
func checkToken(ctx context.Context, want string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	got := ""
	if v := md.Get(tokenHeader); len(v) > 0 {
		got = v[0]
	}
	if !secret.Equal(got, want) {
		return status.Error(codes.Unauthenticated, "weir: wrong or missing cluster token")
	}
	return nil
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return "unknown peer"
}

// IsLoopback reports whether a listen address binds to loopback only.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrUnauthenticated is returned to a task manager whose token the job
// manager refused.
var ErrUnauthenticated = errors.New("the job manager refused the cluster token")

func ctlError(err error) error {
	if status.Code(err) == codes.Unauthenticated {
		return fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	return err
}
