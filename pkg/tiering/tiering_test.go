package tiering

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// switcher records the tiers it was switched to; fail makes the next
// switches fail.
type switcher struct {
	calls []bool
	fail  error
}

func (s *switcher) SetTier(full bool) error {
	if s.fail != nil {
		return s.fail
	}
	s.calls = append(s.calls, full)
	return nil
}

var t0 = time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)

func newPolicy(t *testing.T, mode Mode) (*Policy, *switcher, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	sw := &switcher{}
	p, err := New(mode, 30*time.Minute, sw, slog.New(slog.NewTextHandler(&log, nil)), t0)
	if err != nil {
		t.Fatal(err)
	}
	return p, sw, &log
}

func TestAutoEscalatesOnAVerdictAndComesBackAfterTheHold(t *testing.T) {
	p, sw, log := newPolicy(t, ModeAuto)
	if st := p.State(); st.Tier != TierFaults || !st.InuseSince.IsZero() {
		t.Fatalf("auto starts in %+v, want the faults tier with no inuse view", st)
	}
	p.Observe(t0.Add(10*time.Second), nil)
	if len(sw.calls) != 0 {
		t.Fatalf("no reason, yet switched: %v", sw.calls)
	}
	at := t0.Add(20 * time.Second)
	p.Observe(at, []string{"prod/shop/cart", "prod/shop/pricing"})
	st := p.State()
	if st.Tier != TierFull || !st.InuseSince.Equal(at) || st.Reason != ReasonLeaking || st.Cause != "prod/shop/cart and 1 more" || st.Escalations[ReasonLeaking] != 1 {
		t.Fatalf("after a verdict: %+v", st)
	}
	if !strings.Contains(log.String(), "tracing escalated") || !strings.Contains(log.String(), "prod/shop/cart") {
		t.Errorf("the escalation and its cause are not logged: %s", log)
	}
	// Still leaking: the hold runs from the last verdict, without a new
	// escalation.
	last := at.Add(50 * time.Minute)
	for now := at; !now.After(last); now = now.Add(10 * time.Second) {
		p.Observe(now, []string{"prod/shop/cart"})
	}
	if st := p.State(); st.Tier != TierFull || st.Escalations[ReasonLeaking] != 1 || !st.InuseSince.Equal(at) || !st.Until.Equal(last.Add(30*time.Minute)) {
		t.Fatalf("while leaking: %+v", st)
	}
	p.Observe(last.Add(30*time.Minute-time.Second), nil)
	if p.State().Tier != TierFull {
		t.Fatal("back to faults before the hold ended")
	}
	p.Observe(last.Add(30*time.Minute), nil)
	st = p.State()
	if st.Tier != TierFaults || !st.InuseSince.IsZero() || !st.Until.IsZero() || st.Reason != "" {
		t.Fatalf("after the hold: %+v", st)
	}
	if want := []bool{true, false}; len(sw.calls) != 2 || sw.calls[0] != want[0] || sw.calls[1] != want[1] {
		t.Errorf("switches %v, want %v", sw.calls, want)
	}
	if !strings.Contains(log.String(), "back to the faults tier") {
		t.Errorf("the return is not logged: %s", log)
	}
}

func TestInuseRequestEscalatesAndExtendsTheHold(t *testing.T) {
	p, sw, _ := newPolicy(t, ModeAuto)
	at := t0.Add(time.Minute)
	st := p.Request(at, "prod/shop/cart")
	if st.Tier != TierFull || !st.InuseSince.Equal(at) || st.Reason != ReasonInuseRequest || st.Escalations[ReasonInuseRequest] != 1 {
		t.Fatalf("after a request: %+v", st)
	}
	later := at.Add(20 * time.Minute)
	if st := p.Request(later, "prod/shop/cart"); !st.InuseSince.Equal(at) || !st.Until.Equal(later.Add(30*time.Minute)) || len(sw.calls) != 1 {
		t.Fatalf("a second request must keep the coverage and extend the hold: %+v, switches %v", st, sw.calls)
	}
	p.Observe(later.Add(29*time.Minute), nil)
	if p.State().Tier != TierFull {
		t.Fatal("the second request's hold was not kept")
	}
	p.Observe(later.Add(30*time.Minute), nil)
	if p.State().Tier != TierFaults {
		t.Fatal("not back after the hold")
	}
	// A new escalation is a new coverage.
	again := later.Add(time.Hour)
	if st := p.Request(again, "x"); !st.InuseSince.Equal(again) || st.Escalations[ReasonInuseRequest] != 2 {
		t.Fatalf("second escalation: %+v", st)
	}
}

func TestFixedModesNeverSwitch(t *testing.T) {
	for _, m := range []Mode{ModeFaults, ModeFull} {
		p, sw, _ := newPolicy(t, m)
		p.Observe(t0.Add(time.Second), []string{"a"})
		st := p.Request(t0.Add(2*time.Second), "a")
		p.Observe(t0.Add(48*time.Hour), nil)
		if len(sw.calls) != 0 || st.Tier != m.InitialTier() || p.State().Tier != m.InitialTier() {
			t.Errorf("%s: switches %v, state %+v", m, sw.calls, p.State())
		}
		if (m == ModeFull) != !st.InuseSince.IsZero() {
			t.Errorf("%s: inuse since %v", m, st.InuseSince)
		}
	}
}

func TestFailedSwitchKeepsTheTierAndSaysWhy(t *testing.T) {
	p, sw, log := newPolicy(t, ModeAuto)
	sw.fail = errors.New("attaching tracepoint syscalls:sys_enter_mmap: permission denied")
	st := p.Request(t0, "a")
	if st.Tier != TierFaults || !strings.Contains(st.LastError, "permission denied") || st.Escalations[ReasonInuseRequest] != 0 {
		t.Fatalf("after a failed switch: %+v", st)
	}
	p.Observe(t0.Add(time.Second), []string{"a"})
	if n := strings.Count(log.String(), "changing the tracing tier failed"); n != 1 {
		t.Errorf("the failure logged %d times, want once until it changes", n)
	}
	sw.fail = nil
	if st := p.Request(t0.Add(2*time.Second), "a"); st.Tier != TierFull || st.LastError != "" {
		t.Fatalf("after the switch works again: %+v", st)
	}
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"auto", "faults", "full"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("%s: %v %v", s, m, err)
		}
	}
	if _, err := ParseMode("mappings"); err == nil || !strings.Contains(err.Error(), "auto, faults or full") {
		t.Errorf("a bad mode must name the good ones: %v", err)
	}
	if _, err := New(ModeAuto, 0, &switcher{}, slog.Default(), t0); err == nil {
		t.Error("a zero hold must be refused")
	}
}
