package tracer

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// SetTier attaches the mapping system calls' programs (TierFull) or
// detaches them (TierFaults) while the tracer runs; the other programs stay
// as they are. Page-fault samples, OOM kills, execs and exits are traced in
// both tiers.
//
// The mappings the kernel side knows of are forgotten at each change: while
// the hooks are off, unmaps go unseen, so a mapping kept across a faults
// period could be long gone. After an escalation the inuse view therefore
// holds only what was mapped since it; what was mapped
// before is not known. A program running on another CPU as its link closes
// may still record one mapping after the clearing; it is dropped with its
// process, as any mapping is.
func (t *Tracer) SetTier(tier Tier) error {
	t.tierMu.Lock()
	defer t.tierMu.Unlock()
	if tier != TierFull && tier != TierFaults {
		return fmt.Errorf("tracing tier %q: want %q or %q", tier, TierFaults, TierFull)
	}
	if tier == t.tier {
		return nil
	}
	var err error
	switch tier {
	case TierFull:
		// Leftovers of an earlier full period first: none may pair with a
		// call seen after the hooks are back.
		if err = t.clearMappings(); err != nil {
			return err
		}
		t.mapLinks, err = t.attachTracepoints(true)
	case TierFaults:
		for _, l := range t.mapLinks {
			err = errors.Join(err, l.Close())
		}
		t.mapLinks = nil
		err = errors.Join(err, t.clearMappings())
	}
	if err != nil {
		return err
	}
	t.tier = tier
	return nil
}

// Tier returns the tier in force.
func (t *Tracer) Tier() Tier {
	t.tierMu.Lock()
	defer t.tierMu.Unlock()
	return t.tier
}

// attachTracepoints attaches the syscalls: programs (syscalls) or the
// others, last to first: exits before entries, so that no call is entered
// unseen and left pending. On error none of them stays attached.
func (t *Tracer) attachTracepoints(syscalls bool) ([]link.Link, error) {
	tracepoints := t.objs.tracepoints()
	var links []link.Link
	for i := len(tracepoints) - 1; i >= 0; i-- {
		tp := tracepoints[i]
		if (tp.group == syscallsGroup) != syscalls {
			continue
		}
		l, err := link.Tracepoint(tp.group, tp.name, tp.prog, nil)
		if err != nil {
			for _, l := range links {
				_ = l.Close()
			}
			return nil, fmt.Errorf("attaching tracepoint %s:%s: %w", tp.group, tp.name, err)
		}
		links = append(links, l)
	}
	return links, nil
}

// clearMappings empties the maps that hold tracked mappings and the calls
// in flight, under readMu so that no snapshot reads them half cleared.
func (t *Tracer) clearMappings() error {
	t.readMu.Lock()
	defer t.readMu.Unlock()
	var err error
	for _, m := range []*ebpf.Map{t.objs.PendingCalls, t.objs.LiveMappings, t.objs.MappingEnds} {
		err = errors.Join(err, clearMap(m))
	}
	return err
}

// clearMap deletes every entry of a hash map: the keys are listed first,
// since deleting while iterating makes a hash map's iteration start over.
func clearMap(m *ebpf.Map) error {
	var keys [][]byte
	key, value := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
	it := m.Iterate()
	for it.Next(key, value) {
		keys = append(keys, append([]byte(nil), key...))
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("listing %s: %w", m, err)
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clearing %s: %w", m, err)
		}
	}
	return nil
}
