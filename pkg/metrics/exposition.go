package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/leakwatch/leakwatch/pkg/buildinfo"
	"github.com/leakwatch/leakwatch/pkg/view"
)

// TextFormat is the exposition format AppendText writes: the text format
// promhttp answers a client that states no preference. Prometheus reads it
// whatever it asks for first.
var TextFormat = expfmt.NegotiateAccept(http.Header{}, expfmt.FmtText)

// Exposition is the agent's metrics page: the families of a registry (the
// agent's own figures, which NewExposition registers in it, Go's, the
// process's) and the series of every container.
//
// It gathers like any prometheus.Gatherer. AppendText writes the same page
// as text, the containers' series straight from the view: at 2,000
// containers, gathering built some 35,000 protobuf messages (about 12 MB of
// garbage a page), which under a scrape storm was most of what took the
// agent's heap past its goal.
type Exposition struct {
	reg        prometheus.Gatherer
	containers *collector
	// gatherContainers is a registry holding containers alone, for
	// Gather.
	gatherContainers *prometheus.Registry
	lastPage         atomic.Int64 // ns
}

// NewExposition registers the agent's own metrics over src in reg, and
// returns the page of reg's families and src's containers.
func NewExposition(src view.Source, info buildinfo.Info, reg *prometheus.Registry) (*Exposition, error) {
	e := &Exposition{reg: reg, containers: newCollector(src, info, containersPart), gatherContainers: prometheus.NewRegistry()}
	agent := newCollector(src, info, agentPart)
	agent.lastPage = &e.lastPage
	if err := reg.Register(agent); err != nil {
		return nil, err
	}
	if err := e.gatherContainers.Register(e.containers); err != nil {
		return nil, err
	}
	return e, nil
}

// Gather implements prometheus.Gatherer.
func (e *Exposition) Gather() ([]*dto.MetricFamily, error) {
	return prometheus.Gatherers{e.reg, e.gatherContainers}.Gather()
}

// AppendText appends the page to b in TextFormat: what encoding Gather's
// families would write. A registry's error leaves out what it could not
// gather, and is returned with the rest of the page.
func (e *Exposition) AppendText(b []byte) ([]byte, error) {
	start := time.Now()
	mfs, gatherErr := e.reg.Gather()
	// The registry's families are small (the agent's own, Go's, the
	// process's): encoded first, so that the page is allocated once.
	w := &appendWriter{}
	enc := expfmt.NewEncoder(w, TextFormat)
	var encErr error
	others := make([]encodedFamily, 0, len(mfs))
	for _, mf := range mfs {
		from := len(w.b)
		if err := enc.Encode(mf); err != nil && encErr == nil {
			encErr = fmt.Errorf("encoding %s: %w", mf.GetName(), err)
		}
		others = append(others, encodedFamily{name: mf.GetName(), text: w.b[from:len(w.b):len(w.b)]})
	}
	b = e.containers.appendContainers(b, e.containers.src.Snapshot(), others)
	e.lastPage.Store(int64(time.Since(start)))
	return b, errors.Join(gatherErr, encErr)
}

// appendWriter appends what it is written to b, with the methods that
// spare expfmt a bufio.Writer of its own.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *appendWriter) WriteString(s string) (int, error) {
	w.b = append(w.b, s...)
	return len(s), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

func (w *appendWriter) WriteRune(r rune) (int, error) {
	n := len(w.b)
	w.b = utf8.AppendRune(w.b, r)
	return len(w.b) - n, nil
}
