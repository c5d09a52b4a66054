package tracer

// Range is one tracked range of a process's address space, as the kernel
// holds it: what a profile needs to weigh the inuse view by residency.
type Range struct {
	PID        uint32
	StackID    uint64
	Kind       Kind
	Start, Len uint64
	// Bytes is what the range stands for (Len, or more when it was sampled
	// by size: see Allocation), so resident bytes scale by Bytes/Len.
	Bytes uint64
}

// Ranges reads the tracked ranges of one memory cgroup's processes. It reads
// the whole mapping table (one batched pass, as Snapshot does), so it is
// meant for when a profile is built, not for every collection.
func (t *Tracer) Ranges(memcg uint64) ([]Range, error) {
	t.readMu.Lock()
	defer t.readMu.Unlock()
	b := &t.buf
	var err error
	b.mkeys, b.mvals, err = readAll(t.objs.LiveMappings, b.mkeys, b.mvals)
	if err != nil {
		return nil, err
	}
	var out []Range
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, k := range b.mkeys {
		v := &b.mvals[i]
		if v.Memcg != memcg || v.Len == 0 {
			continue
		}
		bytes, _ := t.weigh(v)
		stack := v.StackId
		if to, ok := t.unwound.aliases[stack]; ok {
			stack = to
		}
		out = append(out, Range{PID: k.Tgid, StackID: stack, Kind: Kind(v.Kind), Start: k.Start, Len: v.Len, Bytes: bytes})
	}
	return out, nil
}
