package deploy

import (
	"maps"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

const chartDir = "deploy/helm/leakwatch"

// kubeVersion is passed to helm: a helm built with `go install` (as
// hack/install-helm.sh does) assumes Kubernetes 1.20, below the chart's
// kubeVersion.
const kubeVersion = "v1.34.0"

// helmOnlyLabels are labels only a Helm release carries.
var helmOnlyLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by"}

func renderChart(t *testing.T, args ...string) map[string]object {
	t.Helper()
	out := run(t, helm(t), append([]string{"template", "leakwatch", chartDir,
		"--namespace", "leakwatch", "--kube-version", kubeVersion}, args...)...)
	objs := map[string]object{}
	decodeDocs(t, "helm template "+chartDir, out, objs)
	for _, o := range objs {
		o.SetLabels(withoutHelmLabels(o.GetLabels()))
		if ds, ok := o.(*appsv1.DaemonSet); ok {
			ds.Spec.Template.Labels = withoutHelmLabels(ds.Spec.Template.Labels)
		}
	}
	return objs
}

func withoutHelmLabels(l map[string]string) map[string]string {
	l = maps.Clone(l)
	for _, k := range helmOnlyLabels {
		delete(l, k)
	}
	return l
}

func TestHelmLint(t *testing.T) {
	run(t, helm(t), "lint", "--strict", chartDir, "--kube-version", kubeVersion)
}

// With its default values the chart renders the objects of deploy/kubernetes,
// but for the Namespace, which Helm users make before installing (Helm keeps
// its release record in it); with namespace.create it renders that too.
func TestHelmRendersTheManifests(t *testing.T) {
	want := manifests(t)
	got := renderChart(t)
	if _, ok := got["Namespace/leakwatch"]; ok {
		t.Error("the chart renders a Namespace with its default values")
	}
	withNS := renderChart(t, "--set", "namespace.create=true")
	got["Namespace/leakwatch"] = withNS["Namespace/leakwatch"]

	for k, w := range want {
		g, ok := got[k]
		if !ok || g == nil {
			t.Errorf("the chart does not render %s", k)
			continue
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s differs between the chart and %s:\n%s", k, manifestsDir, lineDiff(describe(w), describe(g)))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("the chart renders %s, which %s lacks", k, manifestsDir)
		}
	}
}

// securityContext.privileged is the fallback for hosts where the
// capabilities do not suffice; it must yield a valid, privileged pod.
func TestHelmPrivilegedFallback(t *testing.T) {
	objs := renderChart(t, "--set", "securityContext.privileged=true",
		"--set", "serviceMonitor.enabled=false,prometheusRule.enabled=false,dashboard.enabled=false")
	ds, ok := objs["DaemonSet/leakwatch"].(*appsv1.DaemonSet)
	if !ok {
		t.Fatal("no DaemonSet rendered")
	}
	sc := ds.Spec.Template.Spec.Containers[0].SecurityContext
	if sc == nil || sc.Privileged == nil || !*sc.Privileged {
		t.Error("securityContext.privileged=true does not make the container privileged")
	}
	// The API rejects allowPrivilegeEscalation: false with privileged: true.
	if sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		t.Error("privileged container keeps allowPrivilegeEscalation: false, which the API server rejects")
	}
	for _, k := range []string{"ServiceMonitor/leakwatch", "PrometheusRule/leakwatch", "ConfigMap/leakwatch-dashboard"} {
		if _, ok := objs[k]; ok {
			t.Errorf("%s rendered although disabled", k)
		}
	}
}

// lineDiff shows the lines of a and b that differ, in order, with - and +.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out strings.Builder
	i, j := 0, 0
	for i < len(al) || j < len(bl) {
		switch {
		case i < len(al) && j < len(bl) && al[i] == bl[j]:
			i++
			j++
		case j < len(bl) && (i >= len(al) || !contains(al[i:], bl[j])):
			out.WriteString("+ " + bl[j] + "\n")
			j++
		default:
			out.WriteString("- " + al[i] + "\n")
			i++
		}
	}
	return out.String()
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}
