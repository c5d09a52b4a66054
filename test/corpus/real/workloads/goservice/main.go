// Command goservice is a Go service shaped like a real one, for recording
// memory traces: a live index of -live MiB, requests at a load that swings
// over a 20-minute cycle (each allocates short-lived buffers and adds an
// entry to an LRU cache of -cache MiB that fills, then evicts), and batch
// bursts every 5–9 minutes that hold 48 MiB for a minute or so. With
// -leak-rate > 0 it also keeps -leak-rate bytes a second, from -leak-after
// on, in a list it never frees: the leak, at a rate known by construction.
// It uses little CPU: it sleeps between requests.
package main

import (
	"container/list"
	"flag"
	"log"
	"math"
	"math/rand/v2"
	"time"
)

const mib = 1 << 20

type entry struct {
	key  int
	body []byte
}

// lru is a cache bounded in bytes.
type lru struct {
	max, size int
	order     *list.List
	byKey     map[int]*list.Element
}

func (c *lru) put(k int, body []byte) {
	c.byKey[k] = c.order.PushFront(&entry{k, body})
	c.size += len(body)
	for c.size > c.max {
		e := c.order.Remove(c.order.Back()).(*entry)
		delete(c.byKey, e.key)
		c.size -= len(e.body)
	}
}

func (c *lru) get(k int) bool {
	if e, ok := c.byKey[k]; ok {
		c.order.MoveToFront(e)
		return true
	}
	return false
}

// fill returns n bytes written through, so every page is resident.
func fill(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)
	}
	return b
}

func main() {
	live := flag.Int("live", 256, "live index, MiB")
	cacheMiB := flag.Int("cache", 96, "LRU cache bound, MiB")
	leakRate := flag.Int("leak-rate", 0, "bytes a second kept forever (0: healthy)")
	leakAfter := flag.Duration("leak-after", 10*time.Minute, "when the leak starts")
	flag.Parse()

	start := time.Now()
	var index [][]byte
	for range *live * mib / 2048 {
		index = append(index, fill(2048, byte(len(index))))
	}
	log.Printf("index of %d MiB built in %s", *live, time.Since(start))
	cache := &lru{max: *cacheMiB * mib, order: list.New(), byKey: map[int]*list.Element{}}
	var leaked [][]byte
	var burst [][]byte
	burstEnd, nextBurst := time.Time{}, start.Add(time.Duration(5+rand.IntN(5))*time.Minute)
	var leakDebt float64
	lastLeak := time.Now()
	key := 0
	var sink int
	for {
		now := time.Now()
		el := now.Sub(start).Seconds()
		// Load: 4–12 requests a second over a 20-minute cycle, with noise.
		rate := 8 + 4*math.Sin(2*math.Pi*el/1200) + rand.NormFloat64()
		rate = max(rate, 1)
		// A request: temporaries, an index read, a cache lookup and fill.
		tmp := fill(32<<10+rand.IntN(64<<10), byte(key))
		sink += int(tmp[len(tmp)-1]) + len(index[rand.IntN(len(index))])
		k := key - rand.IntN(20000)
		if !cache.get(k) {
			cache.put(key, fill(8<<10, byte(key)))
			key++
		}
		// Batch bursts hold 48 MiB for 40–100 s.
		switch {
		case burst == nil && now.After(nextBurst):
			for range 48 {
				burst = append(burst, fill(mib, byte(len(burst))))
			}
			burstEnd = now.Add(time.Duration(40+rand.IntN(60)) * time.Second)
		case burst != nil && now.After(burstEnd):
			burst = nil
			nextBurst = now.Add(time.Duration(300+rand.IntN(240)) * time.Second)
		}
		if *leakRate > 0 && now.Sub(start) >= *leakAfter {
			leakDebt += float64(*leakRate) * now.Sub(lastLeak).Seconds()
			for leakDebt >= 4096 {
				leaked = append(leaked, fill(4096, byte(len(leaked))))
				leakDebt -= 4096
			}
		}
		lastLeak = now
		time.Sleep(time.Duration(float64(time.Second) / rate))
		if key%20000 == 0 {
			log.Printf("t=%.0fs cache=%d MiB leaked=%d MiB sink=%d", el, cache.size/mib, len(leaked)*4096/mib, sink)
		}
	}
}
