package symbolize

import (
	"strings"

	"github.com/ianlancetaylor/demangle"
)

// demangleOptions drop parameter and template lists, as pprof does by
// default, so the overloads and instances of one function aggregate under
// one name; the mangled name stays in Frame.SystemName. The length cap
// keeps a hostile name from costing more than a short string.
var demangleOptions = []demangle.Option{
	demangle.NoParams, demangle.NoEnclosingParams, demangle.NoTemplateParams, demangle.MaxLength(14),
}

// newFrame makes the frame of an ELF or perf-map symbol, demangling C++
// (_Z...) and Rust (_R..., and legacy _ZN...17h<hash>E) names.
func newFrame(name string) Frame {
	return Frame{Function: demangleName(name), SystemName: name}
}

func demangleName(name string) string {
	if !strings.HasPrefix(name, "_Z") && !strings.HasPrefix(name, "_R") && !strings.HasPrefix(name, "__Z") {
		return name
	}
	if d, err := demangle.ToString(name, demangleOptions...); err == nil && d != "" {
		return d
	}
	return name
}
