// Package rest serves weir's REST API (JSON under /v1/, in the shape of
// Flink's), Prometheus metrics on /metrics and the web UI on /, for the
// jobs registered with a Server: a local job, or the job of a job manager.
//
// A server that listens beyond loopback requires a token: every request to
// the API and /metrics must carry "Authorization: Bearer <token>" (the web
// UI's static files need none; the UI sends the token it was given in its
// address, #token=..., as a cookie). With a TLS configuration it serves
// HTTPS.
package rest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/internal/secret"
	"github.com/weirstream/weir/rest/client"
	"github.com/weirstream/weir/runtime"
)

// Config configures a Server.
type Config struct {
	// Listen is the address to listen on ("127.0.0.1:0" picks a free
	// port on loopback).
	Listen string
	// Token is required on every request when set; it must be set when
	// Listen is beyond loopback.
	Token string
	// TLS, if set, makes the server serve HTTPS with it.
	TLS    *tls.Config
	Logger *slog.Logger
	// EndGrace bounds how long a job that ends waits for clients to read
	// the results of their operations (a stop's savepoint) before Wait
	// returns (default 5s; only with unread results).
	EndGrace time.Duration
}

// Server serves the API of its registered jobs.
type Server struct {
	cfg  Config
	log  *slog.Logger
	lis  net.Listener
	http *http.Server
	prom *collector
	mux  *http.ServeMux

	mu struct {
		sync.Mutex
		jobs  []*jobEntry
		byID  map[string]*jobEntry
		order int
	}
}

// jobEntry is a registered job and its asynchronous operations.
type jobEntry struct {
	id  string
	job *runtime.Job
	// reported is signalled when a client read an operation's result.
	reported chan struct{}

	mu struct {
		sync.Mutex
		ops    map[string]*operation
		opSeq  int
		cancel bool // cancelled through the API
	}
}

// operation is an asynchronous action (savepoint, stop, checkpoint).
type operation struct {
	stop     bool
	done     bool
	reported bool // a client read its result
	loc      string
	id       int64
	errMsg   string
}

// maxOperations bounds the remembered operations of a job.
const maxOperations = 1000

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

// New returns a server for cfg that does not listen yet (see Start); its
// Handler can be mounted elsewhere.
func New(cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Token == "" && !IsLoopback(cfg.Listen) {
		return nil, fmt.Errorf("the REST API listens on %s, beyond loopback: a token is required", cfg.Listen)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.EndGrace <= 0 {
		cfg.EndGrace = 5 * time.Second
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "rest")}
	s.mu.byID = map[string]*jobEntry{}
	s.prom = newCollector(s)
	s.routes()
	return s, nil
}

// Start listens on cfg.Listen and serves until Close.
func Start(cfg Config) (*Server, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("cannot listen for the REST API on %s: %w", s.cfg.Listen, err)
	}
	s.lis = lis
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: s.cfg.TLS}
	go func() {
		var err error
		if s.cfg.TLS != nil {
			err = s.http.ServeTLS(lis, "", "")
		} else {
			err = s.http.Serve(lis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("the REST API stopped serving", "err", err)
		}
	}()
	s.log.Info("REST API listening", "url", s.URL())
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// URL is the base URL of the server.
func (s *Server) URL() string {
	scheme := "http"
	if s.cfg.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + s.Addr()
}

// Close stops serving at once.
func (s *Server) Close() error {
	if s.http == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		return s.http.Close()
	}
	return nil
}

// Register adds a job to the server and returns its id (32 hex digits).
// In paths a job is named by its id or by its name.
func (s *Server) Register(j *runtime.Job) string {
	var b [16]byte
	rand.Read(b[:])
	e := &jobEntry{id: hex.EncodeToString(b[:]), job: j, reported: make(chan struct{}, 1)}
	e.mu.ops = map[string]*operation{}
	j.BeforeEnd(func() { e.beforeEnd(s.cfg.EndGrace) })
	s.mu.Lock()
	s.mu.jobs = append(s.mu.jobs, e)
	s.mu.byID[e.id] = e
	s.mu.Unlock()
	return e.id
}

func (s *Server) jobs() []*jobEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*jobEntry(nil), s.mu.jobs...)
}

// lookup finds a job by id or name.
func (s *Server) lookup(key string) *jobEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.mu.byID[key]; e != nil {
		return e
	}
	var found *jobEntry
	for _, e := range s.mu.jobs {
		if e.job.Graph().Name == key {
			found = e // the newest of that name
		}
	}
	return found
}

// Handler is the server's HTTP handler (authentication included).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The UI's static files hold no data: a browser loads them
		// without the token, and then sends it with every API call.
		ui := !strings.HasPrefix(r.URL.Path, "/v1/") && r.URL.Path != "/v1" && r.URL.Path != "/metrics"
		if s.cfg.Token != "" && !ui && !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="weir"`)
			writeError(w, http.StatusUnauthorized, errors.New("wrong or missing token: send Authorization: Bearer <token>"))
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

func (s *Server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		// The browser UI cannot set headers on a page load: a cookie set
		// from the token in the URL's fragment by the UI itself.
		if c, err := r.Cookie("weir-token"); err == nil {
			got = c.Value
		}
	}
	return secret.Equal(got, s.cfg.Token)
}

type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }

func errorf(code int, format string, args ...any) error {
	return &httpError{code: code, err: fmt.Errorf(format, args...)}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, client.Error{Errors: []string{err.Error()}})
}

// handle adapts a handler returning (value, error) to http.
func handle(f func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := f(r)
		if err != nil {
			var he *httpError
			if errors.As(err, &he) {
				writeError(w, he.code, he.err)
				return
			}
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		code := http.StatusOK
		if r.Method == http.MethodPost || r.Method == http.MethodPatch {
			code = http.StatusAccepted
		}
		writeJSON(w, code, v)
	}
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /v1/overview", handle(s.overview))
	m.HandleFunc("GET /v1/jobs", handle(s.jobList))
	m.HandleFunc("GET /v1/jobs/overview", handle(s.jobList))
	m.HandleFunc("GET /v1/jobs/{id}", handle(s.jobDetail))
	m.HandleFunc("PATCH /v1/jobs/{id}", handle(s.cancel))
	m.HandleFunc("POST /v1/jobs/{id}/cancel", handle(s.cancel))
	m.HandleFunc("GET /v1/jobs/{id}/vertices/{vid}", handle(s.vertex))
	m.HandleFunc("GET /v1/jobs/{id}/checkpoints", handle(s.checkpoints))
	m.HandleFunc("POST /v1/jobs/{id}/checkpoints", handle(s.triggerCheckpoint))
	m.HandleFunc("GET /v1/jobs/{id}/checkpoints/{rid}", s.operationStatusHTTP)
	m.HandleFunc("GET /v1/jobs/{id}/checkpoints/config", handle(s.checkpointConfig))
	m.HandleFunc("GET /v1/jobs/{id}/checkpoints/details/{cid}", handle(s.checkpointDetail))
	m.HandleFunc("GET /v1/jobs/{id}/checkpoints/details/{cid}/subtasks/{vid}", handle(s.checkpointSubtasks))
	m.HandleFunc("GET /v1/jobs/{id}/exceptions", handle(s.exceptions))
	m.HandleFunc("POST /v1/jobs/{id}/savepoints", handle(s.triggerSavepoint))
	m.HandleFunc("GET /v1/jobs/{id}/savepoints/{rid}", s.operationStatusHTTP)
	m.HandleFunc("POST /v1/jobs/{id}/stop", handle(s.stop))
	m.HandleFunc("GET /v1/taskmanagers", handle(s.taskManagers))
	m.Handle("GET /metrics", s.prom.handler())
	m.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no endpoint %s %s", r.Method, r.URL.Path))
	})
	m.Handle("/", uiHandler())
	s.mux = m
}

// beforeEnd runs as the job ends: a stop in progress completes with the
// job's savepoint, then the job waits (at most grace) until clients read
// every finished operation's result.
func (e *jobEntry) beforeEnd(grace time.Duration) {
	sp, outcome := e.job.StopSavepoint(), e.job.Outcome()
	e.mu.Lock()
	for _, op := range e.mu.ops {
		if op.stop && !op.done {
			e.finishLocked(op, sp, outcome)
		}
	}
	e.mu.Unlock()
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	for {
		e.mu.Lock()
		unread := false
		for _, op := range e.mu.ops {
			if op.done && !op.reported {
				unread = true
			}
		}
		e.mu.Unlock()
		if !unread {
			return
		}
		select {
		case <-e.reported:
		case <-deadline.C:
			return
		}
	}
}

// finishLocked completes op with savepoint id, or err.
func (e *jobEntry) finishLocked(op *operation, id checkpoint.ID, err error) {
	op.done = true
	switch {
	case err != nil:
		op.errMsg = err.Error()
	case id == 0:
		op.errMsg = "the job ended without a savepoint"
	default:
		op.id = int64(id)
		op.loc = e.location(id)
	}
}
