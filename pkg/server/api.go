package server

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leakwatch/leakwatch/pkg/detect"
	"github.com/leakwatch/leakwatch/pkg/lookup"
	"github.com/leakwatch/leakwatch/pkg/tiering"
	"github.com/leakwatch/leakwatch/pkg/view"
)

// reasonNoCollection is why the agent is not ready before its first
// collection.
const reasonNoCollection = "no collection yet"

// container is one element of /api/v1/containers: identity, memory and
// verdict flattened, so that clients (jq, the top command) need no nesting.
type container struct {
	ID          string `json:"id"`
	Cgroup      string `json:"cgroup"`
	ContainerID string `json:"container_id"`
	PodUID      string `json:"pod_uid"`
	Pod         string `json:"pod"`
	Namespace   string `json:"namespace"`
	Container   string `json:"container"`
	Image       string `json:"image,omitempty"`
	Kind        string `json:"kind"`
	Runtime     string `json:"runtime"`

	MemoryBytes          uint64     `json:"memory_bytes"`
	LeakSignalBytes      uint64     `json:"leak_signal_bytes"`
	LimitBytes           uint64     `json:"limit_bytes"`
	GrowthBytesPerSecond float64    `json:"growth_bytes_per_second"`
	Confidence           float64    `json:"confidence"`
	Leaking              bool       `json:"leaking"`
	LeakingSince         *time.Time `json:"leaking_since"`
	WarmingUp            bool       `json:"warming_up"`
	TimeToLimitSeconds   *float64   `json:"time_to_limit_seconds"`
	OOMKills             uint64     `json:"oom_kills"`
	MappedBytes          uint64     `json:"mapped_bytes"`
	FaultedBytes         uint64     `json:"faulted_bytes"`
	// Explanation says why the verdict is what it is (the evidence, its
	// span and slope, the cycle and floor the detector measured); null
	// unless some tier finds growth or the container is leaking.
	Explanation *detect.ExplanationJSON `json:"explanation"`

	// Status says in one word what the container is: "leaking",
	// "warming_up", "ok", or "gone" once its cgroup is, when nothing of
	// the figures above is current: its verdict has ended (leaking false,
	// no growth, confidence or time to limit), WasLeaking keeps the one
	// it went with, and the memory figures are those last read.
	Status string `json:"status"`
	// Policy is what the container's leakwatch.io/* annotations ask for;
	// with ignore, its status is "ignored" and it is never leaking.
	Policy     *view.Policy `json:"policy,omitempty"`
	Gone       bool         `json:"gone"`
	GoneAt     *time.Time   `json:"gone_at"`
	WasLeaking bool         `json:"was_leaking"`
	FirstSeen  time.Time    `json:"first_seen"`
	LastSeen   time.Time    `json:"last_seen"`
}

// Values of container.Status.
const (
	statusLeaking   = "leaking"
	statusWarmingUp = "warming_up"
	statusOK        = "ok"
	statusGone      = "gone"
	statusIgnored   = "ignored"
)

// containerDetail is /api/v1/containers/{id}: the list element plus the
// full memory statistics and the recent history, oldest first.
type containerDetail struct {
	container
	Memory view.Memory  `json:"memory"`
	Series []view.Point `json:"series"`
}

// readiness is the body of /readyz. Error carries the reason when not ready,
// so that it reads like every other error response.
type readiness struct {
	Ready          bool              `json:"ready"`
	Error          string            `json:"error,omitempty"`
	Degraded       map[string]string `json:"degraded,omitempty"`
	Collections    uint64            `json:"collections"`
	LastCollection *time.Time        `json:"last_collection"`
	// State tells whether the state store's saves work: an agent whose
	// saves fail still serves, but a restart would lose what it learnt.
	State *view.StateSaves `json:"state,omitempty"`
	// Tracing is the tracing tier in force, why and until when, and since
	// when the inuse view covers mappings.
	Tracing *tiering.State `json:"tracing,omitempty"`
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok"))
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	snap := s.src.Snapshot()
	if snap == nil {
		writeJSON(w, http.StatusServiceUnavailable, readiness{Error: reasonNoCollection})
		return
	}
	taken := snap.Taken
	r := readiness{
		Ready:          snap.Agent.Ready,
		Degraded:       snap.Agent.Degraded,
		Collections:    snap.Agent.Collections,
		LastCollection: &taken,
		State:          snap.Agent.State,
		Tracing:        view.CurrentTracing(s.src, snap),
	}
	if r.Ready {
		writeJSON(w, http.StatusOK, r)
		return
	}
	r.Error = cmp.Or(snap.Agent.NotReady, "agent not ready")
	writeJSON(w, http.StatusServiceUnavailable, r)
}

// listContainers serves the live containers ordered by growth, fastest
// first, then by id, and after them the gone ones, most recently gone first.
// ?leaking=true|false keeps those with that verdict (a gone container has
// none: it is not leaking); ?namespace=X keeps those in namespace X (an
// empty X selects containers outside Kubernetes).
func (s *Server) listContainers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var leaking *bool
	if v := q.Get("leaking"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("leaking=%q: want true or false", v))
			return
		}
		leaking = &b
	}
	namespace, byNamespace := q.Get("namespace"), q.Has("namespace")

	snap := s.src.Snapshot()
	if snap == nil {
		writeError(w, http.StatusServiceUnavailable, reasonNoCollection)
		return
	}
	var byLeaking string
	if leaking != nil {
		byLeaking = strconv.FormatBool(*leaking)
	}
	key := fmt.Sprintf("containers leaking=%s namespace=%t:%s", byLeaking, byNamespace, namespace)
	s.pages.serve(w, r, s.lists, snap, key, func() *page {
		out := make([]container, 0, len(snap.Containers))
		for i := range snap.Containers {
			ct := &snap.Containers[i]
			if leaking != nil && ct.Verdict.Leaking != *leaking {
				continue
			}
			if byNamespace && ct.Namespace != namespace {
				continue
			}
			out = append(out, flatten(ct))
		}
		slices.SortFunc(out, func(a, b container) int {
			if a.Gone != b.Gone {
				if a.Gone {
					return 1
				}
				return -1
			}
			if a.Gone {
				if c := b.GoneAt.Compare(*a.GoneAt); c != 0 {
					return c
				}
			}
			return cmp.Or(cmp.Compare(b.GrowthBytesPerSecond, a.GrowthBytesPerSecond), strings.Compare(a.ID, b.ID))
		})
		return jsonPage(http.StatusOK, out)
	})
}

func (s *Server) getContainer(w http.ResponseWriter, r *http.Request) {
	snap := s.src.Snapshot()
	if snap == nil {
		writeError(w, http.StatusServiceUnavailable, reasonNoCollection)
		return
	}
	ct, ok := findContainer(w, snap, r.PathValue("id"))
	if !ok {
		return
	}
	series, _ := s.src.Series(ct.ID)
	if series == nil {
		// The container may have no point yet; say so with [] rather than null.
		series = []view.Point{}
	}
	writeJSON(w, http.StatusOK, containerDetail{
		container: flatten(ct),
		Memory:    ct.Memory,
		Series:    series,
	})
}

// findContainer resolves {id} as the CLI does (pkg/lookup): an id, a
// container id or its prefix, a name or a cgroup path (slashes escaped as
// %2F), or answers 404 (saying which forms work) or 409 (ambiguous).
func findContainer(w http.ResponseWriter, snap *view.Snapshot, q string) (*view.Container, bool) {
	i, err := lookup.Find(snap.Containers, q, func(c view.Container) lookup.Names {
		return lookup.Names{ID: c.ID, Cgroup: c.Cgroup, ContainerID: c.ContainerID, Namespace: c.Namespace, Pod: c.Pod, Container: c.Container, Gone: c.Gone}
	})
	switch {
	case errors.Is(err, lookup.ErrAmbiguous):
		writeError(w, http.StatusConflict, err.Error())
		return nil, false
	case err != nil:
		writeError(w, http.StatusNotFound, err.Error()+" (in a URL, a slash as %2F); /api/v1/containers lists them")
		return nil, false
	}
	return &snap.Containers[i], true
}

func flatten(ct *view.Container) container {
	c := container{
		ID:          ct.ID,
		Cgroup:      ct.Cgroup,
		ContainerID: ct.ContainerID,
		PodUID:      ct.PodUID,
		Pod:         ct.Pod,
		Namespace:   ct.Namespace,
		Container:   ct.Container,
		Image:       ct.Image,
		Kind:        ct.Kind,
		Runtime:     ct.Runtime,

		MemoryBytes:          ct.Memory.Usage,
		LeakSignalBytes:      ct.Memory.LeakSignal,
		LimitBytes:           ct.Memory.Limit,
		GrowthBytesPerSecond: finite(ct.Verdict.GrowthBytesPerSecond),
		Confidence:           finite(ct.Verdict.Confidence),
		Leaking:              ct.Verdict.Leaking,
		WarmingUp:            ct.Verdict.WarmingUp,
		OOMKills:             ct.OOMKills,
		MappedBytes:          ct.MappedBytes,
		FaultedBytes:         ct.FaultedBytes,
		Explanation:          ct.Verdict.Why,

		Status:     status(ct),
		Policy:     ct.Policy,
		Gone:       ct.Gone,
		WasLeaking: ct.WasLeaking,
		FirstSeen:  ct.FirstSeen,
		LastSeen:   ct.LastSeen,
	}
	if ct.Gone {
		at := ct.GoneAt
		c.GoneAt = &at
	}
	if !ct.Verdict.LeakingSince.IsZero() {
		since := ct.Verdict.LeakingSince
		c.LeakingSince = &since
	}
	if ct.Verdict.TimeToLimit >= 0 {
		secs := ct.Verdict.TimeToLimit.Seconds()
		c.TimeToLimitSeconds = &secs
	}
	return c
}

func status(ct *view.Container) string {
	switch {
	case ct.Gone:
		return statusGone
	case ct.Policy != nil && ct.Policy.Ignore:
		return statusIgnored
	case ct.Verdict.Leaking:
		return statusLeaking
	case ct.Verdict.WarmingUp:
		return statusWarmingUp
	}
	return statusOK
}

// finite keeps a detector's NaN or infinity from failing the whole response:
// JSON has no such numbers.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// methodNotAllowed answers a known path asked with the wrong method.
func methodNotAllowed(allowed ...string) http.Handler {
	allow := strings.Join(allowed, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, r.URL.Path, allow))
	})
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

// writeJSON encodes before writing so that an encoding failure can still be
// reported with a proper status instead of a truncated body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	p := jsonPage(status, v)
	h := w.Header()
	for k, v := range p.header {
		h[k] = v
	}
	h.Set("Content-Length", strconv.Itoa(len(p.body)))
	w.WriteHeader(p.status)
	_, _ = w.Write(p.body)
}

// jsonPage encodes v as a response.
func jsonPage(status int, v any) *page {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		msg, _ := json.Marshal(fmt.Sprintf("encoding response: %v", err))
		fmt.Fprintf(&buf, "{\"error\":%s}\n", msg)
	}
	return &page{status: status, body: buf.Bytes(), header: http.Header{
		"Content-Type":           {"application/json"},
		"Cache-Control":          {"no-store"},
		"X-Content-Type-Options": {"nosniff"},
	}}
}
