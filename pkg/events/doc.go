// Package events sends leakwatch's findings as OpenTelemetry events: OTLP log
// records with an event name, made with the OpenTelemetry Go SDK.
//
// # Events
//
//	event name               severity  when
//	leakwatch.leak.detected  WARN      a container's verdict turns leaking
//	leakwatch.leak.resolved  INFO      a leaking container's verdict turns not leaking
//	leakwatch.oom.kill       ERROR     the kernel's OOM killer killed a process
//
// The exporter polls the view (view.Source) about once a second and compares
// each snapshot with what it has already sent:
//
//   - A container it has not seen before counts as not leaking. So the first
//     snapshot is a baseline in which every container already leaking emits
//     detected once, and so does a container that joins the view already
//     leaking. Consumers thus learn of every current leak even across agent
//     restarts, at the price of a repeated detected event after a restart.
//   - A container that leaves the view, or is reported gone (its cgroup no
//     longer exists), is forgotten and emits nothing more: leaving is not a
//     resolution. Only containers in the current snapshot
//     are remembered, so memory stays bounded by the view's own bound.
//   - Every OOM kill is sent once, by its Seq: the exporter keeps the highest
//     Seq it has sent. It starts at 0 because the agent numbers kills from 1
//     in the same process, so kills recorded before the first poll are sent
//     too. Kills that left the view's bounded list between two polls are
//     counted as dropped (reason "missed").
//
// # Attributes
//
// Resource: service.name (leakwatch), service.version, host.name,
// k8s.node.name (from K8S_NODE_NAME or NODE_NAME, when set), telemetry.sdk.*,
// and whatever OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME add, as the
// specification asks.
//
// Every event, where known (empty values are left out): k8s.namespace.name,
// k8s.pod.name, k8s.pod.uid, k8s.container.name (only for containers of a pod;
// other cgroups get their short name as leakwatch.container.name),
// container.id (the runtime's id), leakwatch.cgroup (path in the memory
// hierarchy) and leakwatch.container.id (the id of the agent's API).
//
// Leak events add leakwatch.growth_bytes_per_second, leakwatch.confidence,
// leakwatch.memory_bytes (the leak signal: anonymous, shared and
// unreclaimable memory), leakwatch.memory.limit_bytes and leakwatch.time_to_limit_seconds
// (both when known).
//
// OOM kill events add process.pid, process.executable.name (the kernel's
// comm, at most 15 bytes), leakwatch.oom.seq, leakwatch.oom.trigger
// (container, ancestor, node or unknown), leakwatch.oom.trigger_cgroup, the
// victim cgroup's memory right after the kill (leakwatch.memory.usage_bytes,
// .anon_bytes, .file_bytes, .kernel_bytes, .limit_bytes), the victim
// process's memory when the kernel chose it (leakwatch.process.rss.anon_bytes,
// .file_bytes, .shmem_bytes and leakwatch.process.virtual_memory_bytes),
// leakwatch.oom.top_stacks (the stacks that grew most before the kill) and
// leakwatch.profile.url (the profile retained for the kill on this agent,
// https when --web.config.file turns on TLS).
// The victim's memory figures are not semantic conventions, so they carry
// leakwatch's prefix rather than squatting in the reserved process.*
// namespace.
//
// # Configuration
//
// Only the standard variables configure the export. Nothing is created, and
// New returns nil, when neither OTEL_EXPORTER_OTLP_ENDPOINT nor
// OTEL_EXPORTER_OTLP_LOGS_ENDPOINT is set, or when OTEL_SDK_DISABLED is true.
// OTEL_EXPORTER_OTLP_LOGS_PROTOCOL (else OTEL_EXPORTER_OTLP_PROTOCOL) picks
// grpc or http/protobuf, the specification's default; the SDK's exporters
// read the endpoint, headers, TLS files, insecure, compression and timeout
// themselves.
//
// # Never blocking the agent
//
// Events go through the SDK's batch processor, whose bounded queue never
// blocks but silently overwrites its oldest record when full. The exporter
// therefore counts the records in flight and refuses a new one while the
// queue is full (dropped, reason "queue_full"), so every loss is counted.
// The OTLP exporters retry retryable failures with exponential backoff, each
// export bounded by OTEL_EXPORTER_OTLP_TIMEOUT (10 s by default); a batch that
// still fails is dropped (reason "export_failed"). Close flushes for at most
// five seconds; what is left is dropped (reason "shutdown").
// leakwatch_events_sent_total{event} and leakwatch_events_dropped_total{reason}
// count it all.
package events
