package symbolize

import (
	"bytes"
	"cmp"
	"debug/elf"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/leakwatch/leakwatch/pkg/procstat"
)

// Config bounds the Symbolizer's caches. Zero values take the defaults.
type Config struct {
	// MaxFiles bounds the symbol tables kept, one per distinct file
	// content (build id). Default 64.
	MaxFiles int
	// MaxTableBytes bounds the heap the kept symbol tables hold, as
	// Stats.TableBytes counts it; the least recently used go first, but
	// one table is kept even when it alone is larger. File data that
	// tables map (a Go pclntab, string tables) is page cache, reclaimable,
	// and not counted. Default 16 MiB.
	MaxTableBytes int64
	// MaxProcesses bounds the captured memory maps. Default 4096.
	MaxProcesses int
	// ProcRoot is where procfs is mounted. Default /proc.
	ProcRoot string
}

// Defaults of Config.
const (
	DefaultMaxFiles      = 64
	DefaultMaxTableBytes = 16 << 20
	DefaultMaxProcesses  = 4096
	DefaultProcRoot      = "/proc"
)

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	if c.MaxFiles < 0 || c.MaxTableBytes < 0 || c.MaxProcesses < 0 {
		return fmt.Errorf("negative cache bound: MaxFiles %d, MaxTableBytes %d, MaxProcesses %d", c.MaxFiles, c.MaxTableBytes, c.MaxProcesses)
	}
	return nil
}

// Mapping is an executable mapping of a process, with what pprof's
// profile.Mapping holds. Mappings are shared between the Locations of a
// process: callers must not modify them.
type Mapping struct {
	Start, Limit, Offset uint64
	// File is the path as the process sees it (inside its container),
	// without the " (deleted)" mark; pseudo mappings keep their name, like
	// "[vdso]".
	File string
	// BuildID is the GNU build id in hex, or else the Go build id, or "".
	BuildID string
	// Deleted says the file was deleted or replaced while mapped.
	Deleted bool

	// What this package could resolve for addresses in the mapping, as
	// pprof's flags of the same names mean it; known once the file's
	// symbol table has loaded (the first Symbolize that needs it).
	HasFunctions, HasFilenames, HasLineNumbers, HasInlineFrames bool
}

// Frame is one function at a location.
type Frame struct {
	// Function is the function name, demangled for C++ and Rust.
	Function string
	// SystemName is the name in the symbol table (mangled), or Function.
	SystemName string
	// File, Line and StartLine are known for Go code only; 0 and "" when
	// unknown.
	File      string
	Line      int
	StartLine int
	// Inlined says this frame was inlined into the next one.
	Inlined bool
}

// Location is one address of a stack.
type Location struct {
	// Address is the address as given, also for return addresses.
	Address uint64
	// Mapping holds Address, or nil if no executable mapping does.
	Mapping *Mapping
	// Frames are innermost first; empty when the address is unknown.
	Frames []Frame
}

// Stats are cumulative counters of the Symbolizer, and the current sizes
// of its caches.
type Stats struct {
	Processes, Files int // cached now
	// TableBytes is the heap the cached symbol tables hold, which
	// Config.MaxTableBytes bounds; MappedBytes is the file data they map,
	// which it does not. Tables evicted while in use are in neither.
	TableBytes, MappedBytes int64

	ProcessHits, ProcessMisses, ProcessEvictions uint64
	FileHits, FileMisses, FileEvictions          uint64
	FilesOpened                                  uint64
	// Errors counts files, maps and perf maps that could not be read or
	// parsed, and faults while reading mapped files.
	Errors uint64
	// Unsymbolized counts addresses returned without frames.
	Unsymbolized uint64
}

// Errors of Capture and Symbolize.
var (
	// ErrGone: the process has exited, or its pid now belongs to another
	// process.
	ErrGone = errors.New("process gone")
	// ErrClosed: the Symbolizer was closed.
	ErrClosed = errors.New("symbolizer closed")
)

// Symbolizer turns addresses of processes into functions. It is safe for
// concurrent use.
type Symbolizer struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	procs   *lru[procKey, *process]
	objects *lru[string, *object]   // by content key (build id, else file identity)
	idents  *lru[fileIdent, string] // file identity -> content key
	// files keeps mapped files open, by content key, from capture until
	// their symbols are first needed: symbol tables load lazily (they cost
	// megabytes each), yet a process that exited meanwhile still resolves.
	files  *lru[string, *heldFile]
	closed bool

	st struct {
		processHits, processMisses, processEvictions atomic.Uint64
		fileHits, fileMisses, fileEvictions          atomic.Uint64
		filesOpened, errors, unsymbolized            atomic.Uint64
	}
}

// heldFile is a mapped file held open from capture until its table
// loads. Goroutines may load from it at once; it is closed when the cache
// has dropped it and no load uses it. The Symbolizer's mutex guards it.
type heldFile struct {
	f       *os.File
	users   int
	dropped bool
}

func (h *heldFile) drop() {
	h.dropped = true
	if h.users == 0 {
		_ = h.f.Close()
	}
}

func (h *heldFile) done() {
	h.users--
	if h.users == 0 && h.dropped {
		_ = h.f.Close()
	}
}

type procKey struct {
	pid   uint32
	start uint64
}

// process is a captured memory map.
type process struct {
	key      procKey
	sig      uint64 // hash of the executable mappings, to tell a change
	mappings []*procMapping
	perfPath string // "" without a pid namespace id
	perf     *perfMap
	perfID   fileIdent
}

type procMapping struct {
	Mapping
	contentKey string    // "" when the file could not be used
	ident      fileIdent // of the file read at capture
	openPath   string    // where it was read, to reload while the process lives
}

// fileIdent identifies file content without reading it.
type fileIdent struct {
	dev, ino    uint64
	size, mtime int64
}

func (f fileIdent) String() string {
	return fmt.Sprintf("%x:%d:%d:%d", f.dev, f.ino, f.size, f.mtime)
}

const (
	logKeyPID  = "pid"
	logKeyFile = "file"
	logKeyErr  = "err"

	maxMapsBytes = 32 << 20
	// clockTicks is USER_HZ, the unit of /proc/PID/stat times; 100 on
	// every architecture Linux runs leakwatch on.
	clockTicks = 100
)

// New returns a Symbolizer. A nil logger discards.
func New(cfg Config, logger *slog.Logger) (*Symbolizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxFiles == 0 {
		cfg.MaxFiles = DefaultMaxFiles
	}
	if cfg.MaxTableBytes == 0 {
		cfg.MaxTableBytes = DefaultMaxTableBytes
	}
	if cfg.MaxProcesses == 0 {
		cfg.MaxProcesses = DefaultMaxProcesses
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = DefaultProcRoot
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Symbolizer{cfg: cfg, log: logger}
	s.procs = newLRU(cfg.MaxProcesses, func(procKey, *process) { s.st.processEvictions.Add(1) })
	s.objects = newLRU(cfg.MaxFiles, func(_ string, o *object) {
		s.st.fileEvictions.Add(1)
		o.evict()
	}).limitWeight(cfg.MaxTableBytes, func(o *object) int64 { return o.heapBytes })
	// Identities are small; keep enough for every file of every process.
	s.idents = newLRU[fileIdent, string](16*cfg.MaxProcesses, nil)
	s.files = newLRU(MaxHeldFiles, func(_ string, h *heldFile) { h.drop() })
	return s, nil
}

// Close drops every cache. It is idempotent; Capture and Symbolize fail
// after it.
func (s *Symbolizer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var keys []string
	s.objects.each(func(k string, _ *object) { keys = append(keys, k) })
	for _, k := range keys {
		s.objects.remove(k)
	}
	keys = keys[:0]
	s.files.each(func(k string, _ *heldFile) { keys = append(keys, k) })
	for _, k := range keys {
		s.files.remove(k)
	}
	return nil
}

// Capture records the executable mappings of a live process and keeps
// their files reachable (identified by build id, held open until their
// symbols are first needed), so that its addresses can be symbolized after
// it exits. Symbol tables load lazily, when Symbolize first needs them.
// It is cheap when the process was captured and its executable mappings
// have not changed; call it again after an exec. A startTime of 0 skips
// the check that pid is still that process.
func (s *Symbolizer) Capture(pid uint32, startTime uint64) error {
	_, err := s.capture(procKey{pid, startTime})
	return err
}

// capture is Capture, returning the captured map: with a small cache,
// other captures may evict it before the caller could look it up.
func (s *Symbolizer) capture(key procKey) (*process, error) {
	pid := key.pid
	if err := s.checkIdentity(key); err != nil {
		return nil, err
	}
	data, err := readFileLimit(s.procPath(pid, "maps"), maxMapsBytes)
	if err != nil {
		return nil, s.procErr(pid, "reading maps", err)
	}
	entries, err := parseMaps(data)
	if err != nil {
		s.st.errors.Add(1)
		return nil, fmt.Errorf("parsing maps of %d: %w", pid, err)
	}
	entries = slices.DeleteFunc(entries, func(e mapsEntry) bool { return !e.executable() })
	sig := mapsSignature(entries)

	old, ok, err := s.cached(key)
	if err != nil {
		return nil, err
	}
	if ok && (old.sig == sig || len(entries) == 0) {
		// An exiting process's maps read empty once its memory is torn
		// down (an OOM kill's victim, captured again for its forensics):
		// the map captured while it lived stays the one to use.
		return old, nil
	}

	p := &process{key: key, sig: sig}
	for _, e := range entries {
		pm := &procMapping{Mapping: Mapping{Start: e.Start, Limit: e.End, Offset: e.Offset, File: e.Path, Deleted: e.Deleted}}
		if e.fileBacked() {
			s.resolve(pid, e, pm)
		}
		p.mappings = append(p.mappings, pm)
	}
	if ns, err := nsPID(s.procPath(pid, "status")); err == nil {
		p.perfPath = s.procPath(pid, "root", "tmp", fmt.Sprintf("perf-%d.map", ns))
		s.refreshPerfMap(p)
	}
	// The kernel may have reused the pid while we read: check again, so a
	// map of another process is never filed under this key.
	hasMemory, err := s.identity(key)
	if err != nil {
		return nil, err
	}
	if ok && !hasMemory {
		// Its memory went as we read: a read of maps ends once the mm is
		// gone, so we may hold its first lines only (an OOM kill's victim
		// captured again for its forensics: its program's code, without
		// libc and ld.so, whose frames then lost their mapping). The map
		// captured while it lived stays.
		return old, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.procs.add(key, p)
	return p, nil
}

// Forget drops a process's captured map.
func (s *Symbolizer) Forget(pid uint32, startTime uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs.remove(procKey{pid, startTime})
}

// Symbolize resolves addresses of one stack of a process, innermost first,
// as the tracer reports them: every address after the first is a return
// address, so it is looked up one byte earlier, in the call instruction,
// and reported as given. A process not captured yet is captured first if
// it still runs. Addresses that cannot be resolved come back without
// frames; nothing is guessed.
func (s *Symbolizer) Symbolize(pid uint32, startTime uint64, addrs []uint64) ([]Location, error) {
	key := procKey{pid, startTime}
	p, err := s.process(key)
	if err != nil {
		return nil, err
	}
	if p.perfPath != "" {
		s.refreshPerfMap(p)
	}
	s.mu.Lock()
	perf := p.perf
	s.mu.Unlock()

	// A file truncated under our mapping faults on access; turn that into
	// a panic this goroutine recovers from, not a crash of the agent.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))

	held := make(map[*procMapping]*object)
	defer func() {
		for _, o := range held {
			if o != nil {
				o.release()
			}
		}
	}()
	locs := make([]Location, len(addrs))
	for i, a := range addrs {
		locs[i].Address = a
		look := a
		if i > 0 && a > 0 {
			look = a - 1
		}
		pm := p.find(look)
		if pm != nil {
			locs[i].Mapping = &pm.Mapping
			o, seen := held[pm]
			if !seen {
				o = s.object(key, pm)
				held[pm] = o
			}
			if o != nil {
				locs[i].Frames = s.safeFrames(o, look-pm.Start+pm.Offset)
			}
		}
		if len(locs[i].Frames) == 0 {
			if name, ok := perf.lookup(look); ok {
				locs[i].Frames = []Frame{newFrame(name)}
			}
		}
		if len(locs[i].Frames) == 0 {
			s.st.unsymbolized.Add(1)
		}
	}
	return locs, nil
}

// process returns the captured map of a process, capturing it first if it
// was not and still runs.
func (s *Symbolizer) process(key procKey) (*process, error) {
	p, ok, err := s.cached(key)
	if err != nil {
		return nil, err
	}
	if ok {
		s.st.processHits.Add(1)
		return p, nil
	}
	s.st.processMisses.Add(1)
	if p, err = s.capture(key); err != nil {
		return nil, fmt.Errorf("capturing %d: %w", key.pid, err)
	}
	return p, nil
}

// cached returns the captured map of a process, if there is one.
func (s *Symbolizer) cached(key procKey) (*process, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, ErrClosed
	}
	p, ok := s.procs.get(key)
	return p, ok, nil
}

// Stats returns the counters.
func (s *Symbolizer) Stats() Stats {
	s.mu.Lock()
	procs, files, tableBytes := s.procs.len(), s.objects.len(), s.objects.weight
	var mapped int64
	s.objects.each(func(_ string, o *object) { mapped += o.mappedBytes })
	s.mu.Unlock()
	return Stats{
		Processes: procs, Files: files, TableBytes: tableBytes, MappedBytes: mapped,
		ProcessHits: s.st.processHits.Load(), ProcessMisses: s.st.processMisses.Load(), ProcessEvictions: s.st.processEvictions.Load(),
		FileHits: s.st.fileHits.Load(), FileMisses: s.st.fileMisses.Load(), FileEvictions: s.st.fileEvictions.Load(),
		FilesOpened: s.st.filesOpened.Load(), Errors: s.st.errors.Load(), Unsymbolized: s.st.unsymbolized.Load(),
	}
}

func (p *process) find(addr uint64) *procMapping {
	i, found := slices.BinarySearchFunc(p.mappings, addr, func(m *procMapping, a uint64) int {
		switch {
		case a < m.Start:
			return 1
		case a >= m.Limit:
			return -1
		}
		return 0
	})
	if !found {
		return nil
	}
	return p.mappings[i]
}

func (s *Symbolizer) safeFrames(o *object, fileOff uint64) (fr []Frame) {
	defer func() {
		if r := recover(); r != nil {
			s.st.errors.Add(1)
			fr = nil
		}
	}()
	v, ok := o.vaddr(fileOff)
	if !ok {
		return nil
	}
	return o.frames(v)
}

// object returns the acquired symbol table of a mapping, reloading it if
// the cache dropped it and the file can still be reached, or nil.
func (s *Symbolizer) object(key procKey, pm *procMapping) *object {
	o := s.objectOf(key, pm)
	if o != nil {
		s.mu.Lock()
		describe(pm, o)
		s.mu.Unlock()
	}
	return o
}

// describe sets what a mapping's file offers, once its table is loaded.
func describe(pm *procMapping, o *object) {
	pm.HasFunctions = len(o.funcs.syms) > 0 || o.goTab != nil
	if g := o.goTab; g != nil && g.legacy == nil {
		pm.HasFilenames, pm.HasLineNumbers = true, true
		pm.HasInlineFrames = g.version >= 120 && g.gofunc != nil
	}
}

func (s *Symbolizer) objectOf(key procKey, pm *procMapping) *object {
	if pm.contentKey == "" {
		return nil
	}
	// The table and the held file are looked up under one lock: loadHeld
	// moves a file's content from the one to the other under it, and a
	// lookup between the two would find neither, which for a process that
	// has exited means no symbols at all.
	s.mu.Lock()
	o, ok := s.objects.get(pm.contentKey)
	var h *heldFile
	held := false
	if ok {
		o.acquire()
	} else if h, held = s.files.get(pm.contentKey); held {
		h.users++
	}
	s.mu.Unlock()
	if ok {
		s.st.fileHits.Add(1)
		return o
	}
	s.st.fileMisses.Add(1)
	// Not loaded yet (or evicted): from the file held open since capture,
	// else from the live process's view of it.
	if held {
		if o, err := s.loadHeld(pm.contentKey, h); err == nil {
			return o
		}
	}
	if s.checkIdentity(key) != nil {
		return nil
	}
	o, _, err := s.load(pm.openPath, pm.ident)
	if err != nil {
		return nil
	}
	return o
}

// resolve finds the file of a mapping as the process sees it and fills in
// pm's content key and build id, loading the file if it is not cached.
func (s *Symbolizer) resolve(pid uint32, e mapsEntry, pm *procMapping) {
	var candidates []string
	if !e.Deleted {
		candidates = append(candidates, s.procPath(pid, "root")+e.Path)
	}
	// map_files holds exactly the mapped file, deleted or replaced, while
	// the process lives (it needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE).
	candidates = append(candidates, s.procPath(pid, "map_files", fmt.Sprintf("%x-%x", e.Start, e.End)))
	for _, path := range candidates {
		st, err := os.Stat(path)
		if err != nil {
			continue
		}
		id, ok := identOf(st)
		// The maps inode is the file's; a different one is a file replaced
		// at the same path, whose symbols would be wrong.
		if !ok || id.ino != e.Inode || !st.Mode().IsRegular() {
			continue
		}
		ck, buildID, err := s.identify(path, id)
		if err != nil {
			s.log.Debug("cannot read mapped file", logKeyPID, pid, logKeyFile, e.Path, logKeyErr, err)
			return
		}
		pm.contentKey, pm.ident, pm.openPath = ck, id, path
		pm.BuildID = buildID
		return
	}
	s.st.errors.Add(1)
	s.log.Debug("mapped file not found", logKeyPID, pid, logKeyFile, e.Path)
}

// load returns the acquired object for the file at path, whose identity
// must be id, and its content key. Files of one build id share one object.
func (s *Symbolizer) load(path string, id fileIdent) (*object, string, error) {
	s.mu.Lock()
	if ck, ok := s.idents.get(id); ok {
		if o, ok := s.objects.get(ck); ok {
			o.acquire()
			s.mu.Unlock()
			s.st.fileHits.Add(1)
			return o, ck, nil
		}
	}
	s.mu.Unlock()

	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, "", err
	}
	if got, ok := identOf(st); !ok || got != id {
		return nil, "", fmt.Errorf("%s changed while opening it", path)
	}
	s.st.filesOpened.Add(1)
	o, err := s.loadFile(f, st.Size())
	if err != nil {
		s.st.errors.Add(1)
		return nil, "", err
	}
	ck := "file:" + id.String()
	if o.buildID != "" {
		ck = "build-id:" + o.buildID
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.idents.add(id, ck)
	if have, ok := s.objects.get(ck); ok {
		// Another process loaded the same content meanwhile.
		o.evict()
		have.acquire()
		s.st.fileHits.Add(1)
		return have, ck, nil
	}
	s.st.fileMisses.Add(1)
	o.acquire()
	s.objects.add(ck, o)
	return o, ck, nil
}

// MaxHeldFiles bounds the mapped files held open between capture and the
// first use of their symbols: beyond its fixed descriptors, an agent holds
// at most this many, whatever the node runs (loads in progress open a few
// more for a moment).
const MaxHeldFiles = 256

// identify names a mapped file's content (its build id, else its identity)
// without loading its symbols, and holds it open for when they are needed.
// A file whose content is known or loaded already is not opened again.
func (s *Symbolizer) identify(path string, id fileIdent) (contentKey, buildID string, err error) {
	s.mu.Lock()
	if ck, ok := s.idents.get(id); ok {
		_, loaded := s.objects.get(ck)
		_, held := s.files.get(ck)
		s.mu.Unlock()
		if loaded || held {
			return ck, strings.TrimPrefix(ck, "build-id:"), nil
		}
	} else {
		s.mu.Unlock()
	}

	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return "", "", err
	}
	if got, ok := identOf(st); !ok || got != id {
		_ = f.Close()
		return "", "", fmt.Errorf("%s changed while opening it", path)
	}
	s.st.filesOpened.Add(1)
	buildID, err = elfBuildID(f, st.Size())
	if err != nil {
		_ = f.Close()
		s.st.errors.Add(1)
		return "", "", err
	}
	contentKey = "file:" + id.String()
	if buildID != "" {
		contentKey = "build-id:" + buildID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idents.add(id, contentKey)
	if _, loaded := s.objects.get(contentKey); loaded {
		_ = f.Close()
		return contentKey, buildID, nil
	}
	if _, held := s.files.get(contentKey); held {
		_ = f.Close()
		return contentKey, buildID, nil
	}
	s.files.add(contentKey, &heldFile{f: f})
	return contentKey, buildID, nil
}

// elfBuildID reads an ELF file's build id from its notes only.
func elfBuildID(f *os.File, size int64) (id string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading %s: %v", f.Name(), r)
		}
	}()
	ef, err := elf.NewFile(f)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errNotELF, err)
	}
	fits := func(off, n uint64) bool { return off <= uint64(size) && n <= uint64(size)-off }
	return readBuildID(ef, fits), nil
}

// loadHeld loads the symbols of a file held open since capture, which the
// caller counted itself a user of, and lets the file go: from now on the
// loaded table serves it.
func (s *Symbolizer) loadHeld(contentKey string, h *heldFile) (*object, error) {
	st, err := h.f.Stat()
	var o *object
	if err == nil {
		if o, err = s.loadFile(h.f, st.Size()); err != nil {
			s.st.errors.Add(1)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h.done()
	if err != nil {
		return nil, err
	}
	if cur, ok := s.files.get(contentKey); ok && cur == h {
		s.files.remove(contentKey)
	}
	if have, ok := s.objects.get(contentKey); ok {
		o.evict()
		have.acquire()
		return have, nil
	}
	o.acquire()
	s.objects.add(contentKey, o)
	return o, nil
}

func (s *Symbolizer) loadFile(f *os.File, size int64) (o *object, err error) {
	// Loading reads mapped memory (the pclntab) too.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("fault reading %s: %v", f.Name(), r)
		}
	}()
	return loadObject(f, size, mmapper(f, size))
}

// mmapper maps file ranges read-only: a Go binary's pclntab is tens of
// megabytes, and symbol tables megabytes, that the page cache already
// holds.
func mmapper(f *os.File, size int64) mapper {
	return func(off, length int64) ([]byte, func(), error) {
		if off < 0 || length <= 0 || off > size || length > size-off {
			return nil, nil, fmt.Errorf("range %d+%d outside file of %d bytes", off, length, size)
		}
		page := int64(os.Getpagesize())
		start := off &^ (page - 1)
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, nil, fmt.Errorf("mapping %s: %w", f.Name(), err)
		}
		// Control holds the descriptor open while it maps: a file held
		// since capture may be closed by another goroutine, and its
		// number reused by another file, at any time.
		var b []byte
		cerr := rc.Control(func(fd uintptr) {
			b, err = unix.Mmap(int(fd), start, int(length+off-start), unix.PROT_READ, unix.MAP_PRIVATE)
		})
		if err = cmp.Or(cerr, err); err != nil {
			return nil, nil, fmt.Errorf("mapping %s: %w", f.Name(), err)
		}
		return b[off-start:], func() { _ = unix.Munmap(b) }, nil
	}
}

// refreshPerfMap rereads the process's perf map when the file changed.
func (s *Symbolizer) refreshPerfMap(p *process) {
	st, err := os.Stat(p.perfPath)
	if err != nil {
		return
	}
	id, ok := identOf(st)
	s.mu.Lock()
	same := ok && id == p.perfID
	s.mu.Unlock()
	if same || !st.Mode().IsRegular() {
		return
	}
	data, err := readFileLimit(p.perfPath, maxPerfMapBytes)
	if err != nil {
		s.st.errors.Add(1)
		return
	}
	pm := parsePerfMap(data)
	s.mu.Lock()
	p.perf, p.perfID = pm, id
	s.mu.Unlock()
}

// checkIdentity verifies that pid is still the process that started at
// key.start (CLOCK_MONOTONIC ns). /proc/PID/stat counts clock ticks of
// CLOCK_BOOTTIME, which runs ahead of CLOCK_MONOTONIC by the time the host
// spent suspended; the check allows for that and for the tick rounding.
func (s *Symbolizer) checkIdentity(key procKey) error {
	_, err := s.identity(key)
	return err
}

// identity is checkIdentity, and says whether the process still has its
// memory: stat's vsize reads 0 once its exit has let go of its mm.
func (s *Symbolizer) identity(key procKey) (hasMemory bool, err error) {
	data, err := os.ReadFile(s.procPath(key.pid, "stat"))
	if err != nil {
		return false, s.procErr(key.pid, "reading stat", err)
	}
	vsize, err := procstat.Field(data, procstat.VSize)
	hasMemory = err == nil && vsize > 0
	if key.start == 0 {
		return hasMemory, nil
	}
	ticks, err := statStartTime(data)
	if err != nil {
		s.st.errors.Add(1)
		return false, fmt.Errorf("parsing stat of %d: %w", key.pid, err)
	}
	var boot, mono unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot)
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	suspended := max(boot.Nano()-mono.Nano(), 0)
	const slack = 3 * 1e9 / clockTicks
	got := int64(ticks) * (1e9 / clockTicks)
	want := int64(key.start)
	if got < want-slack || got > want+suspended+slack {
		return false, fmt.Errorf("pid %d started at %d ns, not %d: %w", key.pid, got, want, ErrGone)
	}
	return hasMemory, nil
}

func (s *Symbolizer) procErr(pid uint32, what string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s of %d: %w", what, pid, ErrGone)
	}
	s.st.errors.Add(1)
	return fmt.Errorf("%s of %d: %w", what, pid, err)
}

func (s *Symbolizer) procPath(pid uint32, elem ...string) string {
	return filepath.Join(append([]string{s.cfg.ProcRoot, strconv.FormatUint(uint64(pid), 10)}, elem...)...)
}

// statStartTime returns field 22 of /proc/PID/stat, the start time in
// clock ticks.
func statStartTime(data []byte) (uint64, error) { return procstat.Field(data, procstat.StartTime) }

// nsPID returns the process's pid in its own pid namespace, the number a
// JIT puts in its perf map's name.
func nsPID(statusPath string) (uint64, error) {
	data, err := readFileLimit(statusPath, 1<<16)
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(data) {
		if rest, ok := bytes.CutPrefix(line, []byte("NSpid:")); ok {
			f := bytes.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseUint(string(f[len(f)-1]), 10, 32)
		}
	}
	return 0, errors.New("no NSpid in status")
}

func identOf(st fs.FileInfo) (fileIdent, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fileIdent{}, false
	}
	return fileIdent{dev: sys.Dev, ino: sys.Ino, size: st.Size(), mtime: st.ModTime().UnixNano()}, true
}

func mapsSignature(entries []mapsEntry) uint64 {
	h := fnv.New64a()
	for _, e := range entries {
		fmt.Fprintf(h, "%x-%x %x %d:%d %d %s %t\n", e.Start, e.End, e.Offset, e.DevMajor, e.DevMinor, e.Inode, e.Path, e.Deleted)
	}
	return h.Sum64()
}

// readFileLimit reads at most limit bytes of a file; procfs files report
// size 0, so os.ReadFile's sizing does not help.
func readFileLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(io.LimitReader(f, limit)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
