package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/leakwatch/leakwatch/pkg/server"
)

const manifestsDir = "deploy/kubernetes"

// object is a decoded manifest: a pointer to its API type.
type object interface {
	GetName() string
	GetLabels() map[string]string
	SetLabels(map[string]string)
}

// newObject returns an empty object of the API type of apiVersion and kind,
// or nil for a kind the deployment should not hold.
func newObject(apiVersion, kind string) object {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1 Service":
		return &corev1.Service{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "apps/v1 DaemonSet":
		return &appsv1.DaemonSet{}
	case "scheduling.k8s.io/v1 PriorityClass":
		return &schedulingv1.PriorityClass{}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &monitoringv1.PrometheusRule{}
	}
	return nil
}

// decodeDocs decodes every YAML document of data strictly into its API type
// (unknown or duplicate fields fail) and returns them by "Kind/name".
func decodeDocs(t *testing.T, source string, data []byte, into map[string]object) {
	t.Helper()
	for i, doc := range splitDocs(data) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s, document %d: %v", source, i+1, err)
		}
		obj := newObject(tm.APIVersion, tm.Kind)
		if obj == nil {
			t.Errorf("%s, document %d: unexpected %s %s", source, i+1, tm.APIVersion, tm.Kind)
			continue
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Errorf("%s, document %d (%s): %v", source, i+1, tm.Kind, err)
			continue
		}
		key := tm.Kind + "/" + obj.GetName()
		if _, dup := into[key]; dup {
			t.Errorf("%s: %s defined twice", source, key)
		}
		into[key] = obj
	}
}

// splitDocs splits a YAML stream at its "---" lines, dropping documents
// that hold only comments or nothing.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), data...), []byte("\n---")) {
		var content bool
		for line := range strings.SplitSeq(string(d), "\n") {
			if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
				content = true
				break
			}
		}
		if content {
			docs = append(docs, d)
		}
	}
	return docs
}

// manifests decodes every file of deploy/kubernetes.
func manifests(t *testing.T) map[string]object {
	t.Helper()
	files, err := filepath.Glob(repoPath(manifestsDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", manifestsDir, err)
	}
	objs := map[string]object{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		decodeDocs(t, filepath.Join(manifestsDir, filepath.Base(f)), data, objs)
	}
	return objs
}

func configMapData(o object) map[string]string {
	if cm, ok := o.(*corev1.ConfigMap); ok {
		return cm.Data
	}
	return nil
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := manifests(t)
	want := []string{
		"Namespace/leakwatch", "PriorityClass/leakwatch-node-agent", "ServiceAccount/leakwatch", "Secret/leakwatch-web",
		"DaemonSet/leakwatch", "Service/leakwatch", "ServiceMonitor/leakwatch",
		"PrometheusRule/leakwatch", "ConfigMap/leakwatch-dashboard",
	}
	for _, k := range want {
		if _, ok := objs[k]; !ok {
			t.Errorf("%s lacks %s", manifestsDir, k)
		}
	}
	if len(objs) != len(want) {
		t.Errorf("%s holds %d objects, want %d: %v", manifestsDir, len(objs), len(want), keys(objs))
	}
	for k, o := range objs {
		for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
			"app.kubernetes.io/component", "app.kubernetes.io/part-of"} {
			if o.GetLabels()[l] == "" {
				t.Errorf("%s has no label %s", k, l)
			}
		}
	}
	if ns, ok := objs["Namespace/leakwatch"].(*corev1.Namespace); ok {
		if ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
			t.Error("Namespace leakwatch does not admit the privileged Pod Security Standard the DaemonSet needs")
		}
	}
	if sm, ok := objs["ServiceMonitor/leakwatch"].(*monitoringv1.ServiceMonitor); ok {
		for _, ep := range sm.Spec.Endpoints {
			if !ep.HonorLabels {
				t.Errorf("ServiceMonitor endpoint %s: honorLabels must be true, so that container labels are not renamed exported_*", ep.Port)
			}
			// The agent answers 401 to a scrape without the web config's credentials.
			if ba := ep.BasicAuth; ba == nil || ba.Username.Name != webSecret || ba.Password.Name != webSecret {
				t.Errorf("ServiceMonitor endpoint %s: basicAuth must come from Secret %s", ep.Port, webSecret)
			}
		}
	}
	if sec, ok := objs["Secret/"+webSecret].(*corev1.Secret); ok {
		checkWebSecret(t, sec)
	}
	if cm, ok := objs["ConfigMap/leakwatch-dashboard"]; ok && cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Error(`dashboard ConfigMap lacks the label grafana_dashboard: "1"`)
	}
}

// The capabilities the agent needs, each documented in the DaemonSet, the
// chart's values and deploy/README.md.
var allowedCaps = []corev1.Capability{"BPF", "PERFMON", "SYS_PTRACE"}

func TestDaemonSetPolicy(t *testing.T) {
	ds, ok := manifests(t)["DaemonSet/leakwatch"].(*appsv1.DaemonSet)
	if !ok {
		t.Fatal("no DaemonSet leakwatch")
	}
	checkDaemonSetPolicy(t, ds)

	docs := map[string][]byte{
		"deploy/kubernetes/03-daemonset.yaml": readFile(t, manifestsDir, "03-daemonset.yaml"),
		"deploy/helm/leakwatch/values.yaml":   readFile(t, "deploy/helm/leakwatch/values.yaml"),
		"deploy/README.md":                    readFile(t, "deploy", "README.md"),
	}
	for _, c := range allowedCaps {
		for name, text := range docs {
			if !bytes.Contains(text, []byte(string(c))) {
				t.Errorf("capability %s is not documented in %s", c, name)
			}
		}
	}
}

func checkDaemonSetPolicy(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("hostPID must be true: the kernel reports host PIDs")
	}
	if pod.HostNetwork || pod.HostIPC {
		t.Error("hostNetwork and hostIPC must stay off")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken must be false: the agent does not call the API")
	}
	if pod.PriorityClassName == "" {
		t.Error("no priorityClassName")
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		t.Errorf("tolerations %v: want one with operator Exists and no key, to run on every node", pod.Tolerations)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("container has no securityContext")
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("container must set privileged: false")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container must set allowPrivilegeEscalation: false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container must set readOnlyRootFilesystem: true")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Error("container must drop ALL capabilities")
	} else if !slices.Equal(sc.Capabilities.Add, allowedCaps) {
		t.Errorf("capabilities added: %v, want exactly the documented %v", sc.Capabilities.Add, allowedCaps)
	}

	// Every host path is mounted read-only, but the agent's own state
	// directory, which it writes (--state-dir), and nothing else.
	const stateDir = "/var/lib/leakwatch"
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mountOf := map[string]string{}
	for _, m := range c.VolumeMounts {
		if p, ok := hostPaths[m.Name]; ok {
			mountOf[p] = m.MountPath
			if p == stateDir {
				if m.ReadOnly || m.MountPath != stateDir {
					t.Errorf("state directory %s mounted at %s read-only=%v; want read-write at %s (--state-dir)", p, m.MountPath, m.ReadOnly, stateDir)
				}
				continue
			}
			if !m.ReadOnly {
				t.Errorf("host path %s is mounted read-write at %s", p, m.MountPath)
			}
		}
	}
	for host, mount := range map[string]string{
		"/proc": "/host/proc", "/sys/fs/cgroup": "/host/sys/fs/cgroup",
		"/sys/kernel/tracing": "/sys/kernel/tracing", "/sys/kernel/debug": "/sys/kernel/debug",
		"/run/containerd": "/host/run/containerd", "/run/crio": "/host/run/crio",
	} {
		if mountOf[host] != mount {
			t.Errorf("host %s mounted at %q, want %s", host, mountOf[host], mount)
		}
	}

	for _, a := range []string{
		"--listen=$(POD_IP):9753", "--proc-root=/host/proc", "--cgroup-root=/host/sys/fs/cgroup",
		"--cri-endpoint=unix:///host/run/containerd/containerd.sock,unix:///host/run/crio/crio.sock",
	} {
		if !slices.Contains(c.Args, a) {
			t.Errorf("args %v lack %s", c.Args, a)
		}
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["POD_IP"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Error("POD_IP must come from the downward API (status.podIP)")
	}
	limit := c.Resources.Limits.Memory()
	if limit.IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("resources %v: want cpu and memory requests and a memory limit", c.Resources)
	}
	switch e, ok := env["GOMEMLIMIT"]; {
	case !ok:
		t.Error("GOMEMLIMIT is not set")
	case e.Value != "":
		q, err := resource.ParseQuantity(strings.Replace(e.Value, "iB", "i", 1))
		if err != nil {
			t.Errorf("GOMEMLIMIT %q: %v", e.Value, err)
		} else if q.Cmp(*limit) >= 0 || q.Value() < limit.Value()/2 {
			t.Errorf("GOMEMLIMIT %s: want between half the memory limit %s and the limit", e.Value, limit)
		}
	case e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil || e.ValueFrom.ResourceFieldRef.Resource != "limits.memory":
		t.Error("GOMEMLIMIT must be a value or come from limits.memory")
	}
	// Every HTTP endpoint asks for credentials the kubelet cannot send, so
	// the probes connect over TCP.
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.TCPSocket == nil || p.TCPSocket.Port.String() != "http" {
			t.Errorf("%s probe %+v: want a tcpSocket probe on port http", name, p)
		}
	}
	checkWebConfigMount(t, pod, c)
	for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance"} {
		if ds.Spec.Selector.MatchLabels[l] == "" || ds.Spec.Template.Labels[l] != ds.Spec.Selector.MatchLabels[l] {
			t.Errorf("selector and pod labels disagree on %s", l)
		}
	}
}

func keys(m map[string]object) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}

func describe(o object) string {
	b, err := yaml.Marshal(o)
	if err != nil {
		return fmt.Sprintf("%+v", o)
	}
	return string(b)
}

// webSecret holds the agent's web config and the scrape credentials.
const webSecret = "leakwatch-web"

const webConfigFlag = "--web.config.file=/etc/leakwatch/web/web-config.yml"

// checkWebConfigMount: every endpoint is guarded by the web config, mounted
// read-only from its Secret, without the clear-text scrape password.
func checkWebConfigMount(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	if !slices.Contains(c.Args, webConfigFlag) {
		t.Errorf("args %v lack %s", c.Args, webConfigFlag)
	}
	i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == webSecret })
	if i < 0 {
		t.Fatalf("no volume of Secret %s", webSecret)
	}
	v := pod.Volumes[i]
	if items := v.Secret.Items; len(items) != 1 || items[0].Key != "web-config.yml" {
		t.Errorf("Secret volume items %v: want only web-config.yml, not the scrape password", items)
	}
	j := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == v.Name })
	switch {
	case j < 0:
		t.Errorf("volume %s is not mounted", v.Name)
	case c.VolumeMounts[j].MountPath != "/etc/leakwatch/web" || !c.VolumeMounts[j].ReadOnly || c.VolumeMounts[j].SubPath != "":
		t.Errorf("web config mount %+v: want /etc/leakwatch/web, read-only, without subPath (so edits apply)", c.VolumeMounts[j])
	}
}

// checkWebSecret: the shipped web config asks for basic auth with a bcrypt
// hash, and the Secret holds the credentials the ServiceMonitor sends.
func checkWebSecret(t *testing.T, sec *corev1.Secret) {
	t.Helper()
	var cfg struct {
		Users map[string]string `json:"basic_auth_users"`
	}
	if err := yaml.UnmarshalStrict([]byte(sec.StringData["web-config.yml"]), &cfg); err != nil {
		t.Fatalf("Secret %s, web-config.yml: %v", sec.Name, err)
	}
	user := sec.StringData["username"]
	if h, ok := cfg.Users[user]; !ok || !strings.HasPrefix(h, "$2") {
		t.Errorf("web config users %v: want a bcrypt hash for the scrape user %q", cfg.Users, user)
	}
	if sec.StringData["password"] == "" {
		t.Error("no scrape password")
	}
	// The agent must start with it, not stop on an invalid config.
	path := filepath.Join(t.TempDir(), "web-config.yml")
	if err := os.WriteFile(path, []byte(sec.StringData["web-config.yml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (server.Config{WebConfigFile: path}).Validate(); err != nil {
		t.Errorf("Secret %s: the agent refuses its web config: %v", sec.Name, err)
	}
}
