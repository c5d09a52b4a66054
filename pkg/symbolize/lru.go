package symbolize

import "container/list"

// lru is a map bounded to max entries, and optionally to a total weight,
// that drops the least recently used entry first. It is not safe for
// concurrent use; the Symbolizer's mutex guards it.
type lru[K comparable, V any] struct {
	max     int
	order   *list.List // front: most recently used
	entries map[K]*list.Element
	evicted func(K, V)

	weigh     func(V) int64 // nil: entries weigh nothing
	maxWeight int64
	weight    int64 // of the entries now
}

type lruEntry[K comparable, V any] struct {
	key    K
	val    V
	weight int64 // as weighed when added
}

func newLRU[K comparable, V any](maxEntries int, evicted func(K, V)) *lru[K, V] {
	return &lru[K, V]{max: maxEntries, order: list.New(), entries: make(map[K]*list.Element), evicted: evicted}
}

// limitWeight bounds the total weight of the entries too. The most
// recent entry stays even when it alone weighs more: its user is about
// to use it.
func (c *lru[K, V]) limitWeight(maxWeight int64, weigh func(V) int64) *lru[K, V] {
	c.maxWeight, c.weigh = maxWeight, weigh
	return c
}

func (c *lru[K, V]) get(k K) (V, bool) {
	e, ok := c.entries[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry[K, V]).val, true
}

// add inserts or replaces k and returns how many entries it evicted. A
// replaced value is not reported as evicted: the caller has it.
func (c *lru[K, V]) add(k K, v V) int {
	var w int64
	if c.weigh != nil {
		w = c.weigh(v)
	}
	c.weight += w
	if e, ok := c.entries[k]; ok {
		ent := e.Value.(*lruEntry[K, V])
		c.weight -= ent.weight
		ent.val, ent.weight = v, w
		c.order.MoveToFront(e)
	} else {
		c.entries[k] = c.order.PushFront(&lruEntry[K, V]{key: k, val: v, weight: w})
	}
	n := 0
	for c.order.Len() > c.max || (c.maxWeight > 0 && c.weight > c.maxWeight && c.order.Len() > 1) {
		c.removeElement(c.order.Back())
		n++
	}
	return n
}

func (c *lru[K, V]) remove(k K) {
	if e, ok := c.entries[k]; ok {
		c.removeElement(e)
	}
}

func (c *lru[K, V]) removeElement(e *list.Element) {
	ent := e.Value.(*lruEntry[K, V])
	c.order.Remove(e)
	delete(c.entries, ent.key)
	c.weight -= ent.weight
	if c.evicted != nil {
		c.evicted(ent.key, ent.val)
	}
}

func (c *lru[K, V]) len() int { return c.order.Len() }

// each calls f on every entry, most recently used first, without touching
// the order.
func (c *lru[K, V]) each(f func(K, V)) {
	for e := c.order.Front(); e != nil; e = e.Next() {
		ent := e.Value.(*lruEntry[K, V])
		f(ent.key, ent.val)
	}
}
