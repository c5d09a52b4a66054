package unwind

import (
	"container/list"
	"errors"
	"io/fs"
	"log/slog"
	"sync"
)

// Cache holds tables by key (the build id, or the path where a binary has
// none), bounded by their total size in bytes: the least recently used go
// first. Each table is built once even when many goroutines ask at once.
type Cache struct {
	maxBytes int
	build    func(root, path string) (*Table, error)
	log      *slog.Logger

	mu      sync.Mutex
	bytes   int
	refused uint64     // builds refused as too large, cumulative
	lru     *list.List // of *cacheEntry, most recent first
	byKey   map[string]*list.Element
}

type cacheEntry struct {
	key   string
	ready chan struct{}
	table *Table
	err   error
	size  int
}

// NewCache returns a cache that keeps at most maxBytes of tables. One table
// may take at most half of them: a binary whose table is larger (LLVM's
// libraries: 15 and 16 MiB) would otherwise empty the cache each time it
// is built, and be built again at each process that maps it.
func NewCache(maxBytes int) *Cache {
	c := &Cache{maxBytes: maxBytes, lru: list.New(), byKey: map[string]*list.Element{}, log: slog.New(slog.DiscardHandler)}
	c.build = func(root, path string) (*Table, error) { return buildTable(root, path, maxBytes/2) }
	return c
}

// SetLogger names where a binary whose table is too large is reported,
// once per binary while the cache remembers it.
func (c *Cache) SetLogger(l *slog.Logger) { c.log = l }

// Table returns the table for key, building it from root+path on a miss.
// A failed build is cached too, so a binary without CFI is read once. A
// file that cannot be opened at root+path (its process exited, its mount
// went away) says nothing of the content that key names: that failure is
// cached for root+path alone, and the next process that maps the same
// content builds its table from where it sees the file.
func (c *Cache) Table(key, root, path string) (*Table, error) {
	place := placeKey(root, path)
	c.mu.Lock()
	for _, k := range []string{key, place} {
		if el, ok := c.byKey[k]; ok {
			c.lru.MoveToFront(el)
			e := el.Value.(*cacheEntry)
			c.mu.Unlock()
			<-e.ready
			return e.table, e.err
		}
	}
	e := &cacheEntry{key: key, ready: make(chan struct{})}
	c.byKey[key] = c.lru.PushFront(e)
	c.mu.Unlock()

	e.table, e.err = c.build(root, path)
	if big := (*TooLargeError)(nil); errors.As(e.err, &big) {
		c.mu.Lock()
		c.refused++
		c.mu.Unlock()
		c.log.Warn("binary not unwound from its call-frame information: its table is too large",
			"file", path, "table_bytes", big.Need, "limit_bytes", big.Limit,
			"hint", "its frames are walked by frame pointer; to unwind it, raise --unwind-table-bytes to at least twice table_bytes")
	}
	size := 64
	if e.table != nil {
		size = e.table.Size()
	}
	close(e.ready)

	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok || el.Value != e {
		return e.table, e.err
	}
	var unreachable *fs.PathError
	if errors.As(e.err, &unreachable) && key != place {
		c.lru.Remove(el)
		delete(c.byKey, key)
		if _, have := c.byKey[place]; have {
			return e.table, e.err
		}
		e.key = place
		c.byKey[place] = c.lru.PushFront(e)
	}
	e.size = size
	c.bytes += size
	c.evict()
	return e.table, e.err
}

// placeKey keys what is cached for a file by where it is: the tables of
// binaries without a build id, and files that could not be opened.
func placeKey(root, path string) string { return root + "\x00" + path }

// evict drops the least recently used built tables until the bound holds;
// the newest entry stays even when it alone exceeds the bound.
func (c *Cache) evict() {
	for c.bytes > c.maxBytes && c.lru.Len() > 1 {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.byKey, e.key)
		c.bytes -= e.size
	}
}

// Bytes is the size of the tables held now.
func (c *Cache) Bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Refused counts the binaries whose table was refused as larger than half
// the cache, once per build (a refusal is remembered while it is cached).
func (c *Cache) Refused() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refused
}
