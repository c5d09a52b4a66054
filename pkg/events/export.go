package events

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/sdk"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// OTLP protocols, as OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	protoGRPC         = "grpc"
	protoHTTPProtobuf = "http/protobuf"
)

// retry is how the OTLP exporters retry a retryable failure. Each export,
// retries included, is also bounded by OTEL_EXPORTER_OTLP_TIMEOUT.
var retry = struct {
	initial, max, elapsed time.Duration
}{initial: time.Second, max: 10 * time.Second, elapsed: time.Minute}

// protocol is the OTLP protocol for logs: the specific variable first, and
// http/protobuf, the specification's default, when neither is set.
func protocol() string {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if s := strings.TrimSpace(os.Getenv(v)); s != "" {
			return s
		}
	}
	return protoHTTPProtobuf
}

// newOTLPExporter makes the SDK's OTLP log exporter for proto. It reads the
// endpoint, headers, TLS, compression and timeout from the environment.
func newOTLPExporter(ctx context.Context, proto string) (sdklog.Exporter, error) {
	switch proto {
	case protoGRPC:
		exp, err := otlploggrpc.New(ctx,
			otlploggrpc.WithRetry(otlploggrpc.RetryConfig{
				Enabled: true, InitialInterval: retry.initial, MaxInterval: retry.max, MaxElapsedTime: retry.elapsed,
			}),
			// gRPC waits up to two minutes between reconnections by default;
			// a collector restarted by a rolling update should see events
			// again within seconds.
			otlploggrpc.WithDialOption(grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
				MinConnectTimeout: 10 * time.Second,
			})),
		)
		if err != nil {
			return nil, fmt.Errorf("making the OTLP gRPC log exporter: %w", err)
		}
		return exp, nil
	case protoHTTPProtobuf:
		exp, err := otlploghttp.New(ctx,
			otlploghttp.WithRetry(otlploghttp.RetryConfig{
				Enabled: true, InitialInterval: retry.initial, MaxInterval: retry.max, MaxElapsedTime: retry.elapsed,
			}),
		)
		if err != nil {
			return nil, fmt.Errorf("making the OTLP HTTP log exporter: %w", err)
		}
		return exp, nil
	default:
		return nil, fmt.Errorf("OTLP protocol %q: leakwatch sends %s or %s", proto, protoGRPC, protoHTTPProtobuf)
	}
}

// newResource describes this agent: the fixed attributes, then what
// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME say, which win.
func newResource(version string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{
		semconv.ServiceName("leakwatch"),
		semconv.ServiceVersion(version),
		semconv.TelemetrySDKName("opentelemetry"),
		semconv.TelemetrySDKLanguageGo,
		semconv.TelemetrySDKVersion(sdk.Version()),
	}
	if host, err := os.Hostname(); err == nil {
		attrs = append(attrs, semconv.HostName(host))
	}
	if node := nodeName(); node != "" {
		attrs = append(attrs, semconv.K8SNodeName(node))
	}
	own := resource.NewWithAttributes(semconv.SchemaURL, attrs...)
	env, err := resource.New(context.Background(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("reading OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	res, err := resource.Merge(own, env)
	if err != nil {
		return nil, fmt.Errorf("merging resources: %w", err)
	}
	return res, nil
}

// nodeName is the Kubernetes node, as the DaemonSet passes it down.
func nodeName() string {
	for _, v := range []string{"K8S_NODE_NAME", "NODE_NAME"} {
		if s := strings.TrimSpace(os.Getenv(v)); s != "" {
			return s
		}
	}
	return ""
}

// routeSDKErrors sends the SDK's own error reports to the logger at debug:
// export failures are counted and logged by countingExporter already, and
// the SDK's default handler would print them unstructured to stderr.
func routeSDKErrors(log *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Debug("OpenTelemetry SDK", "err", err)
	}))
}

// countingExporter sits between the batch processor and the OTLP exporter:
// it counts what was sent and what failed, and logs when the export starts
// failing and when it recovers, not on every failure.
type countingExporter struct {
	next    sdklog.Exporter
	stats   *stats
	log     *slog.Logger
	failing atomic.Bool
}

func (c *countingExporter) Export(ctx context.Context, records []sdklog.Record) error {
	if len(records) == 0 {
		return c.next.Export(ctx, records)
	}
	err := c.next.Export(ctx, records)
	c.stats.exported(records, err)
	if err != nil {
		if !c.failing.Swap(true) {
			c.log.Warn("exporting events failed; dropping them until the collector answers",
				"err", err, "dropped", len(records))
		}
		return err
	}
	if c.failing.Swap(false) {
		c.log.Info("exporting events again")
	}
	return nil
}

func (c *countingExporter) Shutdown(ctx context.Context) error { return c.next.Shutdown(ctx) }

func (c *countingExporter) ForceFlush(ctx context.Context) error { return c.next.ForceFlush(ctx) }
