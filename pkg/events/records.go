package events

import (
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// leakwatch's own attribute keys; see the package documentation.
const (
	keyCgroup         = attribute.Key("leakwatch.cgroup")
	keyID             = attribute.Key("leakwatch.container.id")
	keyName           = attribute.Key("leakwatch.container.name")
	keyGrowth         = attribute.Key("leakwatch.growth_bytes_per_second")
	keyConfidence     = attribute.Key("leakwatch.confidence")
	keyMemory         = attribute.Key("leakwatch.memory_bytes")
	keyLimit          = attribute.Key("leakwatch.memory.limit_bytes")
	keyTimeToLimit    = attribute.Key("leakwatch.time_to_limit_seconds")
	keyUsage          = attribute.Key("leakwatch.memory.usage_bytes")
	keyAnon           = attribute.Key("leakwatch.memory.anon_bytes")
	keyFile           = attribute.Key("leakwatch.memory.file_bytes")
	keyKernel         = attribute.Key("leakwatch.memory.kernel_bytes")
	keySeq            = attribute.Key("leakwatch.oom.seq")
	keyTrigger        = attribute.Key("leakwatch.oom.trigger")
	keyTriggerCgroup  = attribute.Key("leakwatch.oom.trigger_cgroup")
	keyTopStacks      = attribute.Key("leakwatch.oom.top_stacks")
	keyRSSAnon        = attribute.Key("leakwatch.process.rss.anon_bytes")
	keyRSSFile        = attribute.Key("leakwatch.process.rss.file_bytes")
	keyRSSShmem       = attribute.Key("leakwatch.process.rss.shmem_bytes")
	keyVirtualMemory  = attribute.Key("leakwatch.process.virtual_memory_bytes")
	keyProfileURL     = attribute.Key("leakwatch.profile.url")
	keyK8SContainer   = semconv.K8SContainerNameKey
	keyK8SNamespace   = semconv.K8SNamespaceNameKey
	keyK8SPod         = semconv.K8SPodNameKey
	keyK8SPodUID      = semconv.K8SPodUIDKey
	keyContainerID    = semconv.ContainerIDKey
	keyProcessPID     = semconv.ProcessPIDKey
	keyExecutableName = semconv.ProcessExecutableNameKey
)

// identity is who an event is about, as both containers and kills name it.
type identity struct {
	id, cgroup, containerID, podUID, namespace, pod, container string
}

func (c identity) attributes() []attribute.KeyValue {
	var kv []attribute.KeyValue
	str := func(k attribute.Key, v string) {
		if v != "" {
			kv = append(kv, k.String(v))
		}
	}
	str(keyK8SNamespace, c.namespace)
	str(keyK8SPod, c.pod)
	str(keyK8SPodUID, c.podUID)
	if c.inPod() {
		str(keyK8SContainer, c.container)
	} else {
		str(keyName, c.container)
	}
	str(keyContainerID, c.containerID)
	str(keyCgroup, c.cgroup)
	str(keyID, c.id)
	return kv
}

func (c identity) inPod() bool { return c.pod != "" || c.podUID != "" }

// String names the container for people: namespace/pod/container in
// Kubernetes, else its short name, else its cgroup.
func (c identity) String() string {
	switch {
	case c.pod != "":
		return c.namespace + "/" + c.pod + "/" + c.container
	case c.container != "":
		return c.container
	case c.cgroup != "":
		return c.cgroup
	default:
		return "memory cgroup " + c.id
	}
}

// leakRecord is a detected or resolved event for c, observed at t.
func leakRecord(name string, c *view.Container, t time.Time) otellog.Record {
	who := identity{c.ID, c.Cgroup, c.ContainerID, c.PodUID, c.Namespace, c.Pod, c.Container}
	v := c.Verdict
	var r otellog.Record
	r.SetEventName(name)
	r.SetTimestamp(t)
	if name == LeakDetected {
		r.SetSeverity(otellog.SeverityWarn)
		r.SetSeverityText("WARN")
		r.SetBody(attribute.StringValue(fmt.Sprintf("memory leak detected in %s: growing %s/s (confidence %.2f)",
			who, bytes(v.GrowthBytesPerSecond), v.Confidence)))
	} else {
		r.SetSeverity(otellog.SeverityInfo)
		r.SetSeverityText("INFO")
		r.SetBody(attribute.StringValue("memory leak resolved in " + who.String()))
	}
	r.AddAttributes(who.attributes()...)
	r.AddAttributes(
		keyGrowth.Float64(v.GrowthBytesPerSecond),
		keyConfidence.Float64(v.Confidence),
		keyMemory.Int64(int64(c.Memory.LeakSignal)),
	)
	if c.Memory.Limit > 0 {
		r.AddAttributes(keyLimit.Int64(int64(c.Memory.Limit)))
		if v.TimeToLimit >= 0 {
			r.AddAttributes(keyTimeToLimit.Float64(v.TimeToLimit.Seconds()))
		}
	}
	return r
}

// oomRecord is the event of one OOM kill; baseURL prefixes its profile's path.
func oomRecord(k *view.OOMKill, baseURL string) otellog.Record {
	who := identity{k.ID, k.Cgroup, k.ContainerID, k.PodUID, k.Namespace, k.Pod, k.Container}
	var r otellog.Record
	r.SetEventName(OOMKill)
	r.SetTimestamp(k.Time)
	r.SetSeverity(otellog.SeverityError)
	r.SetSeverityText("ERROR")
	body := fmt.Sprintf("OOM kill of %s (pid %d) in %s", k.Comm, k.PID, who)
	switch k.Trigger {
	case "container":
		body += ": its memory limit was reached"
	case "ancestor":
		body += ": the memory limit of " + k.TriggerCgroup + " was reached"
	case "node":
		body += ": the node ran out of memory"
	}
	r.SetBody(attribute.StringValue(body))
	r.AddAttributes(who.attributes()...)
	r.AddAttributes(keyProcessPID.Int64(int64(k.PID)))
	if k.Comm != "" {
		r.AddAttributes(keyExecutableName.String(k.Comm))
	}
	r.AddAttributes(
		keySeq.Int64(int64(k.Seq)),
		keyTrigger.String(k.Trigger),
	)
	if k.TriggerCgroup != "" {
		r.AddAttributes(keyTriggerCgroup.String(k.TriggerCgroup))
	}
	// The cgroup's statistics are all zero when the kill's cgroup was
	// already gone; zeros would read as measurements.
	if m := k.Memory; m != (view.Memory{}) {
		r.AddAttributes(
			keyUsage.Int64(int64(m.Usage)),
			keyAnon.Int64(int64(m.Anon)),
			keyFile.Int64(int64(m.File)),
			keyKernel.Int64(int64(m.Kernel)),
		)
		if m.Limit > 0 {
			r.AddAttributes(keyLimit.Int64(int64(m.Limit)))
		}
	}
	r.AddAttributes(
		keyRSSAnon.Int64(int64(k.AnonRSSBytes)),
		keyRSSFile.Int64(int64(k.FileRSSBytes)),
		keyRSSShmem.Int64(int64(k.ShmemRSSBytes)),
		keyVirtualMemory.Int64(int64(k.TotalVMBytes)),
	)
	if len(k.TopStacks) > 0 {
		r.AddAttributes(keyTopStacks.StringSlice(k.TopStacks))
	}
	if k.ProfileURL != "" && baseURL != "" {
		r.AddAttributes(keyProfileURL.String(strings.TrimSuffix(baseURL, "/") + k.ProfileURL))
	}
	return r
}

// bytes formats a byte count (or rate) for a sentence: "4.0 MiB".
func bytes(n float64) string {
	const unit = 1024
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for ; (n >= unit || n <= -unit) && i < len(units)-1; i++ {
		n /= unit
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", n, units[i])
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}
