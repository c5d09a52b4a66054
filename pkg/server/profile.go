package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/leakwatch/leakwatch/pkg/tiering"
	"github.com/leakwatch/leakwatch/pkg/view"
)

// profileTimeout bounds building one profile (symbolizing included), well
// inside the server's write timeout.
const profileTimeout = 20 * time.Second

// InuseSinceHeader, on an inuse profile taken in the auto tracing mode, is
// when the tracer began tracing mappings: the profile holds only what was
// mapped since (RFC 3339).
const InuseSinceHeader = "Leakwatch-Inuse-Since"

// getProfile serves /api/v1/containers/{id}/profile?type=inuse|faults&seconds=N
// as gzip-compressed pprof, so `go tool pprof URL` works directly. {id} takes
// every form the CLI takes. With seconds, inuse_* is what grew in the window
// and released_* what was released: no figure is negative (pkg/profile).
func (s *Server) getProfile(w http.ResponseWriter, r *http.Request) {
	profiles, ok := s.src.(view.Profiles)
	if !ok {
		writeError(w, http.StatusNotImplemented, "profiles need the tracer, which is not running on this agent")
		return
	}
	id := r.PathValue("id")
	q := r.URL.Query()
	kind := q.Get("type")
	if kind == "" {
		kind = "inuse"
	}
	if kind != "inuse" && kind != "faults" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("type %q: must be inuse or faults", kind))
		return
	}
	var window time.Duration
	if v := q.Get("seconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		maxSeconds := int64(profiles.MaxProfileWindow() / time.Second)
		if err != nil || n < 0 || n > maxSeconds {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("seconds %q: must be a whole number from 0 to %d (the history kept)", v, maxSeconds))
			return
		}
		window = time.Duration(n) * time.Second
	}
	snap := s.src.Snapshot()
	if snap == nil {
		writeError(w, http.StatusServiceUnavailable, reasonNoCollection)
		return
	}
	ct, ok := findContainer(w, snap, id)
	if !ok {
		return
	}
	if note, off := snap.Agent.Degraded[view.PartMappings]; off && kind == "inuse" {
		// An empty inuse profile would read as "nothing mapped".
		writeError(w, http.StatusConflict, "no inuse view on this agent: "+note+"; type=faults works")
		return
	}
	id, name := ct.ID, fileName(*ct)

	if !s.profiles.acquire(w) {
		return
	}
	defer s.profiles.release()
	ctx, cancel := context.WithTimeout(r.Context(), profileTimeout)
	defer cancel()
	data, err := profiles.Profile(ctx, id, kind, window)
	switch {
	case errors.Is(err, view.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("container %q not found", id))
		return
	case errors.Is(err, view.ErrBadRequest):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, view.ErrNoInuseView):
		writeError(w, http.StatusConflict, err.Error())
		return
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, "building the profile took too long; try a smaller window")
		return
	case err != nil:
		s.logger.Warn("building profile", "id", id, logKeyErr, err)
		writeError(w, http.StatusInternalServerError, "building the profile failed: "+err.Error())
		return
	}
	if t, ok := s.src.(view.Tracing); ok && kind == "inuse" {
		// Said in the profile's comments too; here for clients that do
		// not read them (the CLI prints it).
		if st := t.Tracing(); st.Mode == tiering.ModeAuto && !st.InuseSince.IsZero() {
			w.Header().Set(InuseSinceHeader, st.InuseSince.UTC().Format(time.RFC3339))
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	suffix := kind
	if window > 0 {
		suffix += "-" + strconv.FormatInt(int64(window/time.Second), 10) + "s"
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.%s.pb.gz"`, name, suffix))
	_, _ = w.Write(data)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// fileName names a container's profile file: namespace, pod and container
// where known, else its cgroup's short name, with the id to keep it unique.
func fileName(c view.Container) string {
	name := c.Container
	if c.Pod != "" {
		name = c.Namespace + "_" + c.Pod + "_" + c.Container
	}
	if name == "" {
		name = "cgroup"
	}
	name = unsafeName.ReplaceAllString(name, "-")
	if len(name) > 100 {
		name = name[:100]
	}
	return name + "_" + c.ID
}

// listOOMKills serves /api/v1/oomkills: the recent kills, newest first.
func (s *Server) listOOMKills(w http.ResponseWriter, _ *http.Request) {
	snap := s.src.Snapshot()
	if snap == nil {
		writeError(w, http.StatusServiceUnavailable, reasonNoCollection)
		return
	}
	kills := make([]view.OOMKill, 0, len(snap.OOMKills))
	for i := len(snap.OOMKills) - 1; i >= 0; i-- {
		kills = append(kills, snap.OOMKills[i])
	}
	writeJSON(w, http.StatusOK, kills)
}

// getOOMProfile serves /api/v1/oomkills/{seq}/profile?type=inuse|faults,
// the profile retained when the kill happened.
func (s *Server) getOOMProfile(w http.ResponseWriter, r *http.Request) {
	profiles, ok := s.src.(view.Profiles)
	if !ok {
		writeError(w, http.StatusNotImplemented, "profiles need the tracer, which is not running on this agent")
		return
	}
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("OOM kill %q: not a number", r.PathValue("seq")))
		return
	}
	kind := r.URL.Query().Get("type")
	if kind == "" {
		kind = "inuse"
	}
	if kind != "inuse" && kind != "faults" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("type %q: must be inuse or faults", kind))
		return
	}
	data, err := profiles.OOMProfile(seq, kind)
	if errors.Is(err, view.ErrNotFound) {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="oomkill-%d.%s.pb.gz"`, seq, kind))
	_, _ = w.Write(data)
}
