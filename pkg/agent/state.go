package agent

import (
	"strconv"
	"time"

	"github.com/leakwatch/leakwatch/pkg/detect"
	"github.com/leakwatch/leakwatch/pkg/oomrecord"
	"github.com/leakwatch/leakwatch/pkg/series"
	"github.com/leakwatch/leakwatch/pkg/state"
)

// restore takes up the containers and OOM kills of the state store. A
// container whose detector or history does not decode (other settings, a
// newer layout) keeps the rest and starts that part afresh. Whether each
// container still exists is for the first collection to find out.
func (a *Agent) restore(snap state.Snapshot) {
	var fresh int
	for _, c := range snap.Containers {
		// Both budgets: the first collection tells live from gone and
		// trims the gone ones to theirs.
		if len(a.entries) >= a.cfg.MaxContainers+a.cfg.MaxGoneContainers {
			break
		}
		det, err := detect.New(a.cfg.Detect)
		if err != nil {
			continue
		}
		if err := det.UnmarshalBinary(c.Detector); err != nil {
			fresh++
			a.log.Info("detector state not restored; the container warms up again", "id", c.View.ID, "cgroup", c.View.Cgroup, "err", err)
			det, _ = detect.New(a.cfg.Detect)
		}
		h := series.New(a.cfg.History)
		if err := h.UnmarshalBinary(c.History); err != nil {
			a.log.Info("series history not restored", "id", c.View.ID, "cgroup", c.View.Cgroup, "err", err)
			h = series.New(a.cfg.History)
		}
		v := c.View
		v.ID = strconv.FormatUint(v.MemcgID, 10)
		if v.Gone {
			markGone(&v, v.LastSeen)
		}
		a.entries[v.MemcgID] = &entry{c: v, det: det, history: h, restored: true}
	}

	kills := make([]oomrecord.Record, len(snap.OOMKills))
	for i, k := range snap.OOMKills {
		kills[i] = oomrecord.Record{Kill: k.Kill, Inuse: k.Inuse, Faults: k.Faults}
	}
	a.oom.Restore(snap.OOMSeq, kills)
	if snap.Saved.IsZero() {
		a.log.Info("state store is empty; starting fresh", "path", a.store.Path())
		return
	}
	a.log.Info("state restored", "path", a.store.Path(), "containers", len(a.entries),
		"detectors_reset", fresh, "oom_kills", len(a.oom.Kills()), "saved", snap.Saved)
}

// save writes the containers and OOM kills to the state store. Encoding
// holds the read lock for a moment; the write, synced to disk, holds none.
// Every failure is logged (saves are a minute apart, so this does not
// flood), counted, and kept for the next snapshot (/readyz, metrics); the
// next save tries again.
func (a *Agent) save() error {
	if a.store == nil {
		return nil
	}
	start := time.Now()
	snap := state.Snapshot{Saved: start}
	a.mu.RLock()
	snap.Containers = make([]state.Container, 0, len(a.entries))
	for _, e := range a.entries {
		det, err1 := e.det.MarshalBinary()
		hist, err2 := e.history.MarshalBinary()
		if err1 != nil || err2 != nil {
			continue
		}
		snap.Containers = append(snap.Containers, state.Container{View: e.c, History: hist, Detector: det})
	}
	a.mu.RUnlock()
	seq, kills := a.oom.Records()
	snap.OOMSeq = seq
	for _, r := range kills {
		snap.OOMKills = append(snap.OOMKills, state.OOMKill{Kill: r.Kill, Inuse: r.Inuse, Faults: r.Faults})
	}
	a.saves.Path = a.store.Path()
	if err := a.store.Save(snap); err != nil {
		a.errs[errStateSave]++
		a.saves.Failures++
		a.saves.LastFailure, a.saves.LastError = &start, err.Error()
		a.log.Warn("state not saved", "path", a.store.Path(), "failures", a.saves.Failures, "err", err)
		return err
	}
	a.saves.LastSuccess = &start
	a.log.Debug("state saved", "containers", len(snap.Containers), "oom_kills", len(snap.OOMKills), "took", time.Since(start))
	return nil
}
