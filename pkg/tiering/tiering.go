// Package tiering decides what the tracer traces while the agent runs: the
// cheap faults tier (no syscalls: tracepoint, so the node's system calls keep
// the kernel's fast path) or the full tier (also mmap, munmap, mremap, brk
// and mprotect: the inuse view).
//
// In ModeAuto the agent runs in the faults tier and escalates to full while
// there is a reason to: a container judged leaking, or someone asking for an
// inuse profile. It stays full for Hold after the last reason, then goes
// back. Each change is logged with its cause and counted. The tracer forgets
// the mappings it knew at each change (see tracer.Tracer.SetTier), so an
// inuse view covers what was mapped since the escalation: State.InuseSince.
//
// The package holds the policy only; the tracer is reached through Switcher,
// so tests drive it with a clock and no BPF.
package tiering

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Mode is what the user chose (--tracing).
type Mode string

const (
	// ModeFaults stays in the faults tier: no inuse view.
	ModeFaults Mode = "faults"
	// ModeFull stays in the full tier.
	ModeFull Mode = "full"
	// ModeAuto runs in the faults tier and escalates to full on evidence.
	ModeAuto Mode = "auto"
)

// Tier is what the tracer traces at a time.
type Tier string

// Tiers, named as the tracer names them.
const (
	TierFaults Tier = "faults"
	TierFull   Tier = "full"
)

// Reason is why the tracer escalated to the full tier.
type Reason string

const (
	// ReasonLeaking is a container judged leaking.
	ReasonLeaking Reason = "leaking"
	// ReasonInuseRequest is someone asking for an inuse profile.
	ReasonInuseRequest Reason = "inuse_request"
)

// Reasons lists every Reason, for metrics exported from zero.
var Reasons = []Reason{ReasonLeaking, ReasonInuseRequest}

// DefaultHold is how long the full tier stays after its last reason: long
// enough to take a few inuse profiles of a leak and compare them, short
// enough that a node pays for a chase, not for a day.
const DefaultHold = 30 * time.Minute

// ParseMode reads a --tracing value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeFaults, ModeFull, ModeAuto:
		return m, nil
	}
	return "", fmt.Errorf("tracing %q: want %s, %s or %s", s, ModeAuto, ModeFaults, ModeFull)
}

// InitialTier is the tier a mode starts in.
func (m Mode) InitialTier() Tier {
	if m == ModeFull {
		return TierFull
	}
	return TierFaults
}

// Switcher changes the tracer's tier.
type Switcher interface {
	SetTier(full bool) error
}

// State is the policy's state, as the agent reports it.
type State struct {
	Mode Mode `json:"mode"`
	Tier Tier `json:"tier"`
	// Since is when the tier in force began.
	Since time.Time `json:"since"`
	// InuseSince is when the inuse view's coverage began: mappings made
	// before it are not in it. Zero in the faults tier.
	InuseSince time.Time `json:"inuse_since,omitzero"`
	// Reason and Cause say why the full tier is in force in ModeAuto (Cause
	// names the container or the request); empty otherwise.
	Reason Reason `json:"reason,omitempty"`
	Cause  string `json:"cause,omitempty"`
	// Until is when ModeAuto goes back to the faults tier unless a reason
	// comes again; zero otherwise.
	Until time.Time `json:"until,omitzero"`
	// Escalations counts the changes to the full tier, by reason.
	Escalations map[Reason]uint64 `json:"escalations,omitempty"`
	// LastError is the last failed change, kept until one succeeds.
	LastError string `json:"last_error,omitempty"`
}

// Policy decides the tier. It is safe for concurrent use.
type Policy struct {
	mode Mode
	hold time.Duration
	sw   Switcher
	log  *slog.Logger

	mu    sync.Mutex
	state State
	last  time.Time // the last reason, in ModeAuto
}

// New returns the policy of mode, with the tracer started in
// mode.InitialTier() at now. sw may be nil (no tracer): the policy then
// stays in the faults tier.
func New(mode Mode, hold time.Duration, sw Switcher, log *slog.Logger, now time.Time) (*Policy, error) {
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, err
	}
	if mode == ModeAuto && hold <= 0 {
		return nil, errors.New("tracing hold must be above 0")
	}
	p := &Policy{mode: mode, hold: hold, sw: sw, log: log}
	p.state = State{Mode: mode, Tier: mode.InitialTier(), Since: now, Escalations: map[Reason]uint64{}}
	if p.state.Tier == TierFull {
		p.state.InuseSince = now
	}
	if mode == ModeAuto {
		log.Info("tracing: faults tier, escalating to full while a container is leaking or an inuse profile is asked for", "mode", mode, "hold", hold)
	}
	return p, nil
}

// Mode returns the mode chosen.
func (p *Policy) Mode() Mode { return p.mode }

// State returns the current state.
func (p *Policy) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.state
	s.Escalations = make(map[Reason]uint64, len(p.state.Escalations))
	for k, v := range p.state.Escalations {
		s.Escalations[k] = v
	}
	return s
}

// Observe is called after each collection with the containers judged
// leaking: in ModeAuto, any of them escalates (or extends the hold), and
// the tier goes back to faults once the hold has passed since the last
// reason.
func (p *Policy) Observe(now time.Time, leaking []string) {
	if p.mode != ModeAuto || p.sw == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(leaking) > 0 {
		cause := leaking[0]
		if len(leaking) > 1 {
			cause = fmt.Sprintf("%s and %d more", leaking[0], len(leaking)-1)
		}
		p.reason(now, ReasonLeaking, cause)
		return
	}
	if p.state.Tier == TierFull && !now.Before(p.state.Until) {
		p.change(now, TierFaults, "", "")
	}
}

// Request is called when someone asks for an inuse profile, before it is
// built: in ModeAuto it escalates (or extends the hold). It returns the
// state the profile is built in; in ModeFaults, and in ModeAuto when the
// change failed, State.Tier is TierFaults and there is no inuse view.
func (p *Policy) Request(now time.Time, what string) State {
	if p.mode == ModeAuto && p.sw != nil {
		p.mu.Lock()
		p.reason(now, ReasonInuseRequest, what)
		p.mu.Unlock()
	}
	return p.State()
}

// reason records a reason for the full tier at now, escalating if needed.
// Called with mu held.
func (p *Policy) reason(now time.Time, r Reason, cause string) {
	p.last = now
	if p.state.Tier == TierFull {
		// Reason and Cause stay the escalation's.
		p.state.Until = now.Add(p.hold)
		return
	}
	if p.change(now, TierFull, r, cause) {
		p.state.Escalations[r]++
	}
}

// change switches the tracer and records it; false when the switch failed
// (logged, kept in LastError; the tier stays). Called with mu held.
func (p *Policy) change(now time.Time, to Tier, r Reason, cause string) bool {
	if err := p.sw.SetTier(to == TierFull); err != nil {
		if p.state.LastError == "" {
			p.log.Error("changing the tracing tier failed; it stays", "from", p.state.Tier, "to", to, "err", err)
		}
		p.state.LastError = err.Error()
		return false
	}
	from := p.state.Tier
	p.state.LastError = ""
	p.state.Tier, p.state.Since = to, now
	p.state.Reason, p.state.Cause = r, cause
	if to == TierFull {
		p.state.InuseSince = now
		p.state.Until = now.Add(p.hold)
		p.log.Info("tracing escalated: mmap, munmap, mremap, brk and mprotect traced; the inuse view covers mappings made from now",
			"from", from, "to", to, "reason", r, "cause", cause, "until", p.state.Until.Format(time.RFC3339))
	} else {
		p.state.InuseSince, p.state.Until = time.Time{}, time.Time{}
		p.log.Info("tracing back to the faults tier: no reason for the full tier since the hold began",
			"from", from, "to", to, "hold", p.hold, "last_reason_at", p.last.Format(time.RFC3339))
	}
	return true
}
