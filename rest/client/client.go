package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to one weir REST API.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client of the API at base ("http://127.0.0.1:8081"; a
// bare host:port means http). token, if set, is sent as a bearer token;
// tlsConfig, if set, is used for https.
func New(base, token string, tlsConfig *tls.Config) (*Client, error) {
	if base == "" {
		return nil, errors.New("no job manager address: set --jobmanager (or WEIR_JOBMANAGER) to the REST API's URL")
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("invalid REST API address %q: want http(s)://host:port", base)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if tlsConfig != nil {
		tr.TLSClientConfig = tlsConfig
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// APIError is an error the API answered with.
type APIError struct {
	Status   int
	Messages []string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("the REST API answered %d %s: %s", e.Status, http.StatusText(e.Status), strings.Join(e.Messages, "; "))
}

// Do sends a request to path (below /v1) with body (JSON, or nil) and
// decodes the answer into out (unless nil).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/v1"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the REST API at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("cannot read the answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e Error
		if json.Unmarshal(data, &e) != nil || len(e.Errors) == 0 {
			e.Errors = []string{strings.TrimSpace(string(data))}
		}
		return &APIError{Status: resp.StatusCode, Messages: e.Errors}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("cannot decode the answer of %s %s: %w", method, path, err)
	}
	return nil
}

func get[T any](ctx context.Context, c *Client, path string) (T, error) {
	var v T
	err := c.Do(ctx, http.MethodGet, path, nil, &v)
	return v, err
}

func esc(s string) string { return url.PathEscape(s) }

// Overview is GET /v1/overview.
func (c *Client) Overview(ctx context.Context) (Overview, error) {
	return get[Overview](ctx, c, "/overview")
}

// Jobs is GET /v1/jobs.
func (c *Client) Jobs(ctx context.Context) (JobList, error) { return get[JobList](ctx, c, "/jobs") }

// Job is GET /v1/jobs/{job}; job is an id or a name.
func (c *Client) Job(ctx context.Context, job string) (Job, error) {
	return get[Job](ctx, c, "/jobs/"+esc(job))
}

// Vertex is GET /v1/jobs/{job}/vertices/{vid}.
func (c *Client) Vertex(ctx context.Context, job, vid string) (VertexDetail, error) {
	return get[VertexDetail](ctx, c, "/jobs/"+esc(job)+"/vertices/"+esc(vid))
}

// Checkpoints is GET /v1/jobs/{job}/checkpoints (limit < 0: the
// server's default history length).
func (c *Client) Checkpoints(ctx context.Context, job string, limit int) (Checkpoints, error) {
	p := "/jobs/" + esc(job) + "/checkpoints"
	if limit >= 0 {
		p += fmt.Sprintf("?limit=%d", limit)
	}
	return get[Checkpoints](ctx, c, p)
}

// CheckpointDetail is GET /v1/jobs/{job}/checkpoints/details/{cid}.
func (c *Client) CheckpointDetail(ctx context.Context, job string, cid int64) (Checkpoint, error) {
	return get[Checkpoint](ctx, c, fmt.Sprintf("/jobs/%s/checkpoints/details/%d", esc(job), cid))
}

// CheckpointSubtasks is GET
// /v1/jobs/{job}/checkpoints/details/{cid}/subtasks/{vid}.
func (c *Client) CheckpointSubtasks(ctx context.Context, job string, cid int64, vid string) (CheckpointSubtasks, error) {
	return get[CheckpointSubtasks](ctx, c, fmt.Sprintf("/jobs/%s/checkpoints/details/%d/subtasks/%s", esc(job), cid, esc(vid)))
}

// CheckpointConfig is GET /v1/jobs/{job}/checkpoints/config.
func (c *Client) CheckpointConfig(ctx context.Context, job string) (CheckpointConfig, error) {
	return get[CheckpointConfig](ctx, c, "/jobs/"+esc(job)+"/checkpoints/config")
}

// Exceptions is GET /v1/jobs/{job}/exceptions.
func (c *Client) Exceptions(ctx context.Context, job string) (Exceptions, error) {
	return get[Exceptions](ctx, c, "/jobs/"+esc(job)+"/exceptions")
}

// TaskManagers is GET /v1/taskmanagers.
func (c *Client) TaskManagers(ctx context.Context) (TaskManagers, error) {
	return get[TaskManagers](ctx, c, "/taskmanagers")
}

func (c *Client) trigger(ctx context.Context, path string, body any) (string, error) {
	var r TriggerResponse
	if err := c.Do(ctx, http.MethodPost, path, body, &r); err != nil {
		return "", err
	}
	return r.RequestID, nil
}

// TriggerCheckpoint starts a checkpoint; its status is at
// CheckpointStatus.
func (c *Client) TriggerCheckpoint(ctx context.Context, job string) (string, error) {
	return c.trigger(ctx, "/jobs/"+esc(job)+"/checkpoints", nil)
}

// TriggerSavepoint starts a savepoint; its status is at SavepointStatus.
func (c *Client) TriggerSavepoint(ctx context.Context, job string, req SavepointRequest) (string, error) {
	return c.trigger(ctx, "/jobs/"+esc(job)+"/savepoints", req)
}

// Stop stops the job with a savepoint; the status is at SavepointStatus.
func (c *Client) Stop(ctx context.Context, job string, req SavepointRequest) (string, error) {
	return c.trigger(ctx, "/jobs/"+esc(job)+"/stop", req)
}

// Cancel cancels the job.
func (c *Client) Cancel(ctx context.Context, job string) error {
	return c.Do(ctx, http.MethodPatch, "/jobs/"+esc(job)+"?mode=cancel", nil, nil)
}

// SavepointStatus is the status of a savepoint or stop.
func (c *Client) SavepointStatus(ctx context.Context, job, rid string) (OperationStatus, error) {
	return get[OperationStatus](ctx, c, "/jobs/"+esc(job)+"/savepoints/"+esc(rid))
}

// CheckpointStatus is the status of a triggered checkpoint.
func (c *Client) CheckpointStatus(ctx context.Context, job, rid string) (OperationStatus, error) {
	return get[OperationStatus](ctx, c, "/jobs/"+esc(job)+"/checkpoints/"+esc(rid))
}

// Await polls status every interval until the operation completed and
// returns its result (an error when it failed). progress, if set, is
// called after every poll that found it in progress.
func Await(ctx context.Context, interval time.Duration, status func(context.Context) (OperationStatus, error), progress func(elapsed time.Duration)) (Operation, error) {
	start := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		st, err := status(ctx)
		if err != nil {
			return Operation{}, err
		}
		if st.Status.ID == "COMPLETED" && st.Operation != nil {
			if fc := st.Operation.FailureCause; fc != nil {
				return *st.Operation, errors.New(fc.Message)
			}
			return *st.Operation, nil
		}
		if progress != nil {
			progress(time.Since(start))
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return Operation{}, ctx.Err()
		}
	}
}
