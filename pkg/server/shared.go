package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"weak"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/leakwatch/leakwatch/pkg/metrics"
	"github.com/leakwatch/leakwatch/pkg/view"
)

// The large responses (/metrics, /api/v1/containers) are built once per view
// and shared. A scrape of 2,000 containers builds about 35,000 metrics with
// their label pairs and encodes 5 MB; built per request, eight concurrent
// scrapes took the agent past its 256 MiB limit. Built once, concurrent
// requests wait for the one build in flight and are served its bytes.
const (
	// pageMaxAge bounds how long a page is served again while the view
	// stays the same: the agent's own figures (go_*, process_*, events)
	// change between views, and stay at most this stale.
	pageMaxAge = 2 * time.Second
	// maxPages bounds the pages kept for one view; the JSON list is
	// cached per filter, which a client chooses.
	maxPages = 8
	// maxConcurrentPages bounds the requests served a shared page at
	// once, per endpoint; pageWait is how long one beyond them waits for
	// a slot (a cached page is written in milliseconds) before a 429.
	maxConcurrentPages = 16
	pageWait           = 5 * time.Second
)

// textAppender is a gatherer that writes its page as text itself
// (metrics.Exposition), sparing the protobuf messages of Gather.
type textAppender interface {
	AppendText(b []byte) ([]byte, error)
}

// page is one encoded response, shared by every request it answers.
// Nothing in it changes once ready is closed, but for the gzip variant,
// made at most once, on first demand.
type page struct {
	ready  chan struct{}
	made   time.Time
	status int
	header http.Header
	body   []byte

	gzipOnce sync.Once
	gzipped  []byte
}

// pageCache holds the pages of the current view. Its key is the snapshot
// itself, held weakly: the view is immutable and each collection publishes
// a new one, so identity is its version and the cache never keeps an old
// view alive.
type pageCache struct {
	maxAge time.Duration
	// building lets one page be built at a time, whatever its key: the
	// bound on the memory a build costs.
	building sync.Mutex

	mu    sync.Mutex
	view  weak.Pointer[view.Snapshot]
	pages map[string]*page
}

func newPageCache() *pageCache {
	return &pageCache{maxAge: pageMaxAge, pages: make(map[string]*page)}
}

// get returns the page of snap under key: the one built or being built for
// this view if young enough, else a new one from build. It returns nil if
// ctx ends while waiting for another request's build.
func (c *pageCache) get(ctx context.Context, snap *view.Snapshot, key string, build func() *page) *page {
	c.mu.Lock()
	if v := weak.Make(snap); v != c.view {
		c.view = v
		c.pages = make(map[string]*page)
	}
	p := c.pages[key]
	if p != nil {
		select {
		case <-p.ready:
			if time.Since(p.made) >= c.maxAge {
				p = nil
			}
		default: // in flight: shared
		}
	}
	if p == nil {
		p = &page{ready: make(chan struct{})}
		if _, ok := c.pages[key]; ok || len(c.pages) < maxPages {
			c.pages[key] = p
		}
		c.mu.Unlock()
		// Built to the end even if this client goes away: others may
		// be waiting for it. Each build has its request's slot, so
		// the limiter bounds the builds pending too.
		c.build(p, build)
		return p
	}
	c.mu.Unlock()

	select {
	case <-p.ready:
		return p
	case <-ctx.Done():
		return nil
	}
}

func (c *pageCache) build(p *page, build func() *page) {
	c.building.Lock()
	defer c.building.Unlock()
	made := time.Now()
	b := build()
	p.status, p.header, p.body, p.made = b.status, b.header, b.body, made
	close(p.ready)
}

// serve answers r with the page of the current view under key, after
// taking a slot of l.
func (c *pageCache) serve(w http.ResponseWriter, r *http.Request, l *limiter, snap *view.Snapshot, key string, build func() *page) {
	if !l.acquireWithin(w, r, pageWait) {
		return
	}
	defer l.release()
	p := c.get(r.Context(), snap, key, build)
	if p == nil {
		return // the client went away
	}
	h := w.Header()
	for k, v := range p.header {
		h[k] = v
	}
	h.Add("Vary", "Accept-Encoding")
	body := p.body
	if acceptsGzip(r) {
		body = p.gzip()
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(p.status)
	_, _ = w.Write(body)
}

func (p *page) gzip() []byte {
	p.gzipOnce.Do(func() {
		var buf bytes.Buffer
		// The text compresses about tenfold: sized once, not doubled
		// through.
		buf.Grow(len(p.body) / 8)
		// Cannot fail: the level is valid and a bytes.Buffer takes all.
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		_, _ = zw.Write(p.body)
		_ = zw.Close()
		p.gzipped = buf.Bytes()
	})
	return p.gzipped
}

// acceptsGzip reports whether the request's Accept-Encoding lists gzip
// without refusing it (q=0).
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			for param := range strings.SplitSeq(params, ";") {
				k, q, _ := strings.Cut(param, "=")
				if strings.TrimSpace(k) == "q" {
					f, err := strconv.ParseFloat(strings.TrimSpace(q), 64)
					return err == nil && f > 0
				}
			}
			return true
		}
	}
	return false
}

// metricsHandler serves reg's metrics as one page per view.
func (s *Server) metricsHandler(reg prometheus.Gatherer) http.Handler {
	// The last page's size, so that the buffer is sized once instead of
	// doubling through it (builds run one at a time). An Exposition sizes
	// its page itself.
	var lastSize int
	build := func() *page {
		var b []byte
		var err error
		if t, ok := reg.(textAppender); ok {
			b, err = t.AppendText(nil)
		} else {
			b, err = appendGathered(make([]byte, 0, lastSize+lastSize/8), reg)
		}
		if err != nil {
			// A collector that fails must not hide every other metric.
			s.logger.Warn("gathering metrics", logKeyErr, err)
		}
		lastSize = len(b)
		return &page{status: http.StatusOK, header: http.Header{"Content-Type": {string(metrics.TextFormat)}}, body: b}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.pages.serve(w, r, s.scrapes, s.src.Snapshot(), "metrics", build)
	})
}

// appendGathered appends what reg gathers, encoded in metrics.TextFormat.
func appendGathered(b []byte, reg prometheus.Gatherer) ([]byte, error) {
	mfs, err := reg.Gather()
	buf := bytes.NewBuffer(b)
	enc := expfmt.NewEncoder(buf, metrics.TextFormat)
	for _, mf := range mfs {
		err = errors.Join(err, enc.Encode(mf))
	}
	return buf.Bytes(), err
}

// acquireWithin takes a slot like acquire, waiting up to wait for one, or
// until the client goes away (answering nothing).
func (l *limiter) acquireWithin(w http.ResponseWriter, r *http.Request, wait time.Duration) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return true
	case <-r.Context().Done():
		return false
	case <-t.C:
		return l.acquire(w)
	}
}
