package unwind

import (
	"container/list"
	"sync"
)

// Cache holds tables by key (the build id, or the path where a binary has
// none), bounded by their total size in bytes: the least recently used go
// first. Each table is built once even when many goroutines ask at once.
type Cache struct {
	maxBytes int
	build    func(root, path string) (*Table, error)

	mu    sync.Mutex
	bytes int
	lru   *list.List // of *cacheEntry, most recent first
	byKey map[string]*list.Element
}

type cacheEntry struct {
	key   string
	ready chan struct{}
	table *Table
	err   error
	size  int
}

// NewCache returns a cache that keeps at most maxBytes of tables.
func NewCache(maxBytes int) *Cache {
	return &Cache{maxBytes: maxBytes, build: BuildTable, lru: list.New(), byKey: map[string]*list.Element{}}
}

// Table returns the table for key, building it from root+path on a miss.
// A failed build is cached too, so a binary without CFI is read once.
func (c *Cache) Table(key, root, path string) (*Table, error) {
	c.mu.Lock()
	if el, ok := c.byKey[key]; ok {
		c.lru.MoveToFront(el)
		e := el.Value.(*cacheEntry)
		c.mu.Unlock()
		<-e.ready
		return e.table, e.err
	}
	e := &cacheEntry{key: key, ready: make(chan struct{})}
	c.byKey[key] = c.lru.PushFront(e)
	c.mu.Unlock()

	e.table, e.err = c.build(root, path)
	size := 64
	if e.table != nil {
		size = e.table.Size()
	}
	close(e.ready)

	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok && el.Value == e {
		e.size = size
		c.bytes += size
		c.evict()
	}
	return e.table, e.err
}

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
