package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// MaxStackCopyBytes is the most user stack one event copies (the BPF
// program's STACK_COPY_MAX).
const MaxStackCopyBytes = 16384

// stackPoll is how often the stack copy reader drains the ring without
// being woken (the BPF side wakes it once an eighth of the ring is queued).
const stackPoll = time.Second

// stackFlushWait bounds how long a Snapshot waits for the copies queued
// before it to be unwound.
const stackFlushWait = 3 * time.Second

// Where unwound stacks live: user space owns what it unwound, the kernel's
// maps keep what it can key itself.
//
//   - A tracked mapping whose stack was copied carries the copy's sample id
//     in live_mappings; aliases maps it to the unwound stack (or, where
//     unwinding failed, to the frame-pointer stack).
//   - A copied fault sample was counted under its frame-pointer key in
//     fault_samples first; its weight is moved to a key with the unwound
//     stack, kept here, and subtracted from the kernel key when read. So the
//     kernel's counts, its anonymous share and every byte stay exact.
//
// Entries are collected like the kernel's stacks: an alias or stack that
// two snapshots in a row did not reference goes.
type unwound struct {
	stacks  map[uint64]Stack
	aliases map[uint64]uint64
	moved   map[leakwatchFaultKey]faultCount
	faults  map[leakwatchFaultKey]unwoundFault

	unrefAliases, unrefStacks map[uint64]struct{}
	counts                    map[CopyResult]uint64
}

type faultCount struct{ bytes, samples uint64 }

type unwoundFault struct {
	faultCount
	from leakwatchFaultKey // the frame-pointer key it was moved off, for its anonymous share
}

func newUnwound() unwound {
	return unwound{
		stacks:       make(map[uint64]Stack),
		aliases:      make(map[uint64]uint64),
		moved:        make(map[leakwatchFaultKey]faultCount),
		faults:       make(map[leakwatchFaultKey]unwoundFault),
		unrefAliases: make(map[uint64]struct{}),
		unrefStacks:  make(map[uint64]struct{}),
		counts:       make(map[CopyResult]uint64),
	}
}

// SetUnwinder sets what unwinds stack copies; before Run. Without one,
// every copied event keeps its frame-pointer stack.
func (t *Tracer) SetUnwinder(u StackUnwinder) { t.unwinder = u }

// stackQueueBytes bounds the stack copies read off the ring and waiting to
// be unwound, in record bytes as the ring counts them (4 MiB), and
// stackQueueLen in copies (their buffers are of the largest record's
// size: at most 8 MiB, during a burst). The reader only moves a record
// out, so the ring empties as fast as the kernel fills it, while the
// unwinder may take its time on a new process (its maps, a binary's first
// table). A copy that finds the queue full keeps its frame-pointer stack,
// counted as CopyQueueFull. The queue is what lets the ring stay small:
// its pages are mapped into the agent twice. (Bounded at 256 copies
// alone, it held less than the 4 MiB ring it replaced, whose records are
// mostly shorter than the largest: on a busy node, 191-307 of 11,500
// copies in a burst found it full.)
const (
	stackQueueBytes = 4 << 20
	stackQueueLen   = 512
)

// stackBatchLen is the most copies handed over at once: the unwinder
// starts on a batch while the reader reads the next.
const stackBatchLen = 32

// queuedCopy is one stack copy waiting to be unwound: its header, and its
// window inside the record as read (a copyBuffers buffer). A nil record
// marks a Flush.
type queuedCopy struct {
	hdr    leakwatchStackCopyHeader
	record *[]byte
	window []byte
}

// copyBuffers recycles the buffers records are read into: the reader reads
// a record straight into one and hands it to the unwinder, which clears
// it and puts it back. (A bounded free list of our own, a channel, cost
// the agent more CPU under a page-fault loop than the pool: 1.73-1.86%
// of a core against 1.20-1.43%.)
var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, binary.Size(leakwatchStackCopyHeader{})+MaxStackCopyBytes)
	return &b
}}

// readStackCopies moves the stack copies off the ring as they come and
// unwinds them in a second goroutine, until the ring is closed. The
// copies read at one wake-up go over as one batch: one hand-over between
// the goroutines per wake-up, not per copy.
func (t *Tracer) readStackCopies() error {
	queue := make(chan []queuedCopy, stackQueueLen)
	// Copies and record bytes read and not yet unwound.
	var queued, queuedBytes atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for batch := range queue {
			for _, q := range batch {
				if q.record == nil {
					select {
					case t.stackFlushed <- struct{}{}:
					default:
					}
					continue
				}
				t.takeCopy(&q.hdr, q.window)
				// The stack's bytes are the program's secrets: gone once unwound.
				queuedBytes.Add(-int64(len(*q.record)))
				clear(*q.record)
				*q.record = (*q.record)[:0]
				copyBuffers.Put(q.record)
				queued.Add(-1)
			}
		}
	}()
	var batch []queuedCopy
	send := func() {
		if len(batch) > 0 {
			queue <- batch
			batch = nil
		}
	}
	defer func() {
		send()
		close(queue)
		<-done
	}()

	var (
		rec ringbuf.Record
		hdr leakwatchStackCopyHeader
	)
	hsize := binary.Size(hdr)
	buf := copyBuffers.Get().(*[]byte)
	t.stackRing.SetDeadline(time.Now().Add(stackPoll))
	for {
		if len(batch) >= stackBatchLen || t.stackRingAvailable() == 0 {
			send() // before the read waits, or the unwinder would
		}
		rec.RawSample = (*buf)[:0]
		err := t.stackRing.ReadInto(&rec)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			t.stackRing.SetDeadline(time.Now().Add(stackPoll))
			continue
		case errors.Is(err, ringbuf.ErrFlushed):
			batch = append(batch, queuedCopy{}) // behind what was read before it
			send()
			continue
		case errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed):
			return errClosed
		case err != nil:
			return fmt.Errorf("reading stack copies: %w", err)
		}
		if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &hdr); err != nil || int(hdr.Len) > len(rec.RawSample)-hsize || hdr.Len > MaxStackCopyBytes {
			t.log.Warn("malformed stack copy from the kernel", "bytes", len(rec.RawSample))
			clear(rec.RawSample)
			continue
		}
		if queued.Load() >= stackQueueLen || queuedBytes.Load()+int64(len(rec.RawSample)) > stackQueueBytes {
			t.mu.Lock()
			t.unwound.counts[CopyQueueFull]++
			t.fallBack(&hdr)
			t.mu.Unlock()
			clear(rec.RawSample)
			continue
		}
		// ReadInto reads into buf's array when the record fits, as every
		// well-formed one does.
		*buf = rec.RawSample
		queued.Add(1)
		queuedBytes.Add(int64(len(rec.RawSample)))
		batch = append(batch, queuedCopy{hdr: hdr, record: buf, window: rec.RawSample[hsize : hsize+int(hdr.Len)]})
		buf = copyBuffers.Get().(*[]byte)
	}
}

func (t *Tracer) takeCopy(h *leakwatchStackCopyHeader, window []byte) {
	c := StackCopy{
		Process: Process{PID: h.Tgid, StartTime: h.StartTime},
		Memcg:   h.Memcg, ExecID: h.ExecId,
		Fault: h.Kind == uint32(leakwatchStackCopyKindSTACK_COPY_FAULT), Weight: h.Weight,
		IP: h.Ip, SP: h.Sp, BP: h.Bp, Window: window,
		FPStackID: h.FpStackId,
	}
	st, err := Stack{}, errors.New("no unwinder")
	if t.unwinder != nil {
		st, err = t.unwinder.Unwind(&c)
	}
	u := &t.unwound
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil || len(st.Frames) == 0 {
		if errors.Is(err, ErrGoStack) {
			u.counts[CopyGo]++
		} else {
			u.counts[CopyFellBack]++
		}
		t.fallBack(h)
		return
	}
	st.LeafReturn = 0
	id := stackHash(st.Frames, st.Truncated)
	if _, have := u.stacks[id]; !have {
		if len(u.stacks) >= int(t.cfg.MaxStacks) {
			u.counts[CopyOverLimits]++
			t.fallBack(h)
			return
		}
		u.stacks[id] = st
	}
	if st.Truncated {
		u.counts[CopyTruncated]++
	}
	if !c.Fault {
		if len(u.aliases) >= 2*int(t.cfg.MaxMappings) {
			u.counts[CopyOverLimits]++
			return // the mapping shows an unknown stack, counted
		}
		u.aliases[h.SampleId] = id
		u.counts[CopyUnwound]++
		return
	}
	from := leakwatchFaultKey{Memcg: h.Memcg, StackId: h.FpStackId, Tgid: h.Tgid, ExecId: h.ExecId}
	to := from
	to.StackId = id
	f, have := u.faults[to]
	if !have && len(u.faults) >= int(t.cfg.MaxFaultKeys) {
		u.counts[CopyOverLimits]++
		return // the weight stays with the frame-pointer key
	}
	f.bytes += h.Weight
	f.samples++
	f.from = from
	u.faults[to] = f
	m := u.moved[from]
	m.bytes += h.Weight
	m.samples++
	u.moved[from] = m
	u.counts[CopyUnwound]++
}

// fallBack keeps the frame-pointer stack for a copy that was not unwound:
// a fault's weight stays where the kernel counted it; a mapping's sample id
// stands for the frame-pointer stack. t.mu is held.
func (t *Tracer) fallBack(h *leakwatchStackCopyHeader) {
	if h.Kind == uint32(leakwatchStackCopyKindSTACK_COPY_MAPPING) && len(t.unwound.aliases) < 2*int(t.cfg.MaxMappings) {
		t.unwound.aliases[h.SampleId] = h.FpStackId
	}
}

// stackHash keys an unwound stack: FNV-1a over its PCs, from a basis other
// than the BPF program's so that the two kinds of stack do not meet.
func stackHash(pcs []uint64, truncated bool) uint64 {
	h := uint64(0x84222325cbf29ce4)
	if truncated {
		h ^= 1
		h *= 0x100000001b3
	}
	for _, pc := range pcs {
		h ^= pc
		h *= 0x100000001b3
	}
	if h == 0 {
		h = 1
	}
	return h
}

// stackRingAvailable is the bytes queued in the stack ring, 0 once it is
// closed: the reader's AvailableBytes reads the ring without its lock and
// dereferences nil after Close, which Run's shutdown and Close may do while
// readStackCopies runs.
func (t *Tracer) stackRingAvailable() int {
	t.stackRingMu.RLock()
	defer t.stackRingMu.RUnlock()
	if t.stackRingClosed {
		return 0
	}
	return t.stackRing.AvailableBytes()
}

// closeStackRing closes the stack ring's reader (idempotent), after which
// stackRingAvailable no longer reads it.
func (t *Tracer) closeStackRing() error {
	t.stackRingMu.Lock()
	defer t.stackRingMu.Unlock()
	t.stackRingClosed = true
	return t.stackRing.Close()
}

// flushStackCopies waits until the copies queued now are unwound, so that
// the mappings a snapshot reads find their aliases.
func (t *Tracer) flushStackCopies() {
	if t.stackRing == nil || !t.stackReading.Load() {
		return
	}
	select {
	case <-t.stackFlushed: // a stale signal
	default:
	}
	if err := t.stackRing.Flush(); err != nil {
		return
	}
	select {
	case <-t.stackFlushed:
	case <-time.After(stackFlushWait):
	}
}

// resolveAlias returns the stack a mapping's stack id stands for, and
// notes the alias as referenced. t.mu is held.
func (t *Tracer) resolveAlias(id uint64, seen map[uint64]struct{}) uint64 {
	if to, ok := t.unwound.aliases[id]; ok {
		seen[id] = struct{}{}
		return to
	}
	return id
}

// mergeFaults turns the kernel's fault keys and the unwound ones into the
// snapshot's samples: moved weight off the kernel keys, onto the unwound.
// t.mu is held.
func (t *Tracer) mergeFaults(keys []leakwatchFaultKey, vals []leakwatchFaultValue) []FaultSample {
	u := &t.unwound
	out := make([]FaultSample, 0, len(keys)+len(u.faults))
	share := make(map[leakwatchFaultKey]leakwatchFaultValue, len(u.moved))
	for i, k := range keys {
		v := vals[i]
		if m, ok := u.moved[k]; ok {
			share[k] = v
			v.Bytes -= min(m.bytes, v.Bytes)
			v.Samples -= min(m.samples, v.Samples)
			if v.Samples == 0 {
				continue // every sample of it was unwound
			}
		}
		anon, file := splitFaultBytes(v.Bytes, v.Checked, v.CheckedFile)
		out = append(out, FaultSample{
			Memcg: k.Memcg, PID: k.Tgid, ExecID: k.ExecId, StackID: k.StackId,
			Bytes: anon, FileBytes: file, Samples: v.Samples,
		})
	}
	for k, f := range u.faults {
		v := share[f.from] // zero when the kernel key is gone: all anonymous
		anon, file := splitFaultBytes(f.bytes, v.Checked, v.CheckedFile)
		out = append(out, FaultSample{
			Memcg: k.Memcg, PID: k.Tgid, ExecID: k.ExecId, StackID: k.StackId,
			Bytes: anon, FileBytes: file, Samples: f.samples,
		})
	}
	return out
}

// forgetFaults drops the unwound fault state of processes whose kernel
// fault keys a snapshot drops. t.mu is held.
func (t *Tracer) forgetFaults(pids map[uint32]uint64) {
	if len(pids) == 0 {
		return
	}
	u := &t.unwound
	for k := range u.moved {
		if _, ok := pids[k.Tgid]; ok {
			delete(u.moved, k)
		}
	}
	for k := range u.faults {
		if _, ok := pids[k.Tgid]; ok {
			delete(u.faults, k)
		}
	}
}

// collectUnwound forgets aliases that two snapshots in a row found no
// mapping for, then unwound stacks nothing refers to. t.mu is held.
func (t *Tracer) collectUnwound(seenAliases map[uint64]struct{}) {
	u := &t.unwound
	unref := make(map[uint64]struct{})
	for id := range u.aliases {
		if _, ok := seenAliases[id]; ok {
			continue
		}
		if _, before := u.unrefAliases[id]; before {
			delete(u.aliases, id)
			continue
		}
		unref[id] = struct{}{}
	}
	u.unrefAliases = unref

	used := make(map[uint64]struct{}, len(u.aliases)+len(u.faults))
	for _, to := range u.aliases {
		used[to] = struct{}{}
	}
	for k := range u.faults {
		used[k.StackId] = struct{}{}
	}
	unref = make(map[uint64]struct{})
	for id := range u.stacks {
		if _, ok := used[id]; ok {
			continue
		}
		if _, before := u.unrefStacks[id]; before {
			delete(u.stacks, id)
			delete(t.handed, id)
			continue
		}
		unref[id] = struct{}{}
	}
	u.unrefStacks = unref
}

// kernelStacksUsed adds the kernel stacks that user space state refers to:
// frame-pointer stacks that aliases stand for. t.mu is held.
func (t *Tracer) kernelStacksUsed(used map[uint64]struct{}) {
	for _, to := range t.unwound.aliases {
		if _, mine := t.unwound.stacks[to]; !mine {
			used[to] = struct{}{}
		}
	}
}

// readCopyCounts adds the stack copy counters to snap.
func (t *Tracer) readCopyCounts(snap *Snapshot) error {
	snap.StackCopies = make(map[CopyResult]uint64, len(kernelCopyResults)+5)
	var per []uint64
	for i, r := range kernelCopyResults {
		if err := t.objs.CopyCounts.Lookup(uint32(i), &per); err != nil {
			return fmt.Errorf("reading stack copy counts: %w", err)
		}
		var n uint64
		for _, v := range per {
			n += v
		}
		snap.StackCopies[r] = n
	}
	t.mu.Lock()
	for r, n := range t.unwound.counts {
		snap.StackCopies[r] = n
	}
	t.mu.Unlock()
	if r, ok := t.unwinder.(TableReporter); ok {
		snap.UnwindTables = r.Tables()
	}
	return nil
}
