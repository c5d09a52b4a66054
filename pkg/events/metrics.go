package events

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	sdklog "go.opentelemetry.io/otel/sdk/log"
)

const namespace = "leakwatch"

// eventNames are the values of the event label, indexed as stats.sent.
var eventNames = [...]string{LeakDetected, LeakResolved, OOMKill}

// Reasons for dropping an event, the values of the reason label.
const (
	reasonQueueFull    = iota // the export queue was full
	reasonExportFailed        // the collector refused it or did not answer in time
	reasonShutdown            // still queued when the flush at Close ended
	reasonMissed              // an OOM kill left the view before it was polled
	numReasons
)

var reasonNames = [numReasons]string{"queue_full", "export_failed", "shutdown", "missed"}

// stats counts the events' fate. Run's goroutine admits records; the batch
// processor's goroutine reports their export.
type stats struct {
	limit   int64        // the batch processor's queue size
	pending atomic.Int64 // admitted, not yet exported nor failed
	closed  atomic.Bool  // set once abandon has counted what was pending
	sent    [len(eventNames)]atomic.Uint64
	dropped [numReasons]atomic.Uint64
}

// admit reserves a place in the export queue, or says it is full.
func (s *stats) admit() bool {
	if s.closed.Load() || s.pending.Load() >= s.limit {
		return false
	}
	s.pending.Add(1)
	return true
}

func (s *stats) drop(reason int, n uint64) { s.dropped[reason].Add(n) }

// exported accounts for records that left the queue, sent or failed.
func (s *stats) exported(records []sdklog.Record, err error) {
	if s.closed.Load() {
		return // already counted as dropped at shutdown
	}
	s.pending.Add(-int64(len(records)))
	if err != nil {
		s.drop(reasonExportFailed, uint64(len(records)))
		return
	}
	for i := range records {
		for j, name := range eventNames {
			if records[i].EventName() == name {
				s.sent[j].Add(1)
			}
		}
	}
}

// abandon counts what is still pending as dropped at shutdown and stops
// further counting, returning how many were abandoned.
func (s *stats) abandon() uint64 {
	s.closed.Store(true)
	n := max(s.pending.Swap(0), 0)
	s.drop(reasonShutdown, uint64(n))
	return uint64(n)
}

// Collector exports the counts of events sent and dropped.
func (e *Exporter) Collector() prometheus.Collector {
	return &collector{
		stats: e.stats,
		sent: prometheus.NewDesc(prometheus.BuildFQName(namespace, "events", "sent_total"),
			"OpenTelemetry events the collector accepted, by event name.", []string{"event"}, nil),
		dropped: prometheus.NewDesc(prometheus.BuildFQName(namespace, "events", "dropped_total"),
			"OpenTelemetry events lost, by reason: queue_full (the export queue was full), "+
				"export_failed (the collector refused them or did not answer in time, retries included), "+
				"shutdown (still queued when the agent stopped), missed (OOM kills that left the agent's view before they were sent).",
			[]string{"reason"}, nil),
	}
}

type collector struct {
	stats         *stats
	sent, dropped *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sent
	ch <- c.dropped
}

// Collect implements prometheus.Collector. Every label value is always
// exported, zero included, so that rates start from the agent's start.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for i, name := range eventNames {
		ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(c.stats.sent[i].Load()), name)
	}
	for i, name := range reasonNames {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(c.stats.dropped[i].Load()), name)
	}
}
