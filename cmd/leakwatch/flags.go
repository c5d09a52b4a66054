package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// envName is the environment variable that sets a flag: LEAKWATCH_ and the
// flag's name in upper case with dashes and dots as underscores
// (--web.config.file: LEAKWATCH_WEB_CONFIG_FILE).
func envName(flagName string) string {
	return "LEAKWATCH_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(flagName))
}

// hasEnv says whether a flag is also set by a variable: long flags are; a
// one-letter flag (-o FILE) names something for one invocation only.
func hasEnv(f *flag.Flag) bool { return len(f.Name) > 1 }

// flagName is a flag as the help and the README write it: -o, --listen.
func flagName(f *flag.Flag) string {
	if len(f.Name) == 1 {
		return "-" + f.Name
	}
	return "--" + f.Name
}

// newFlagSet returns a flag set whose usage lists each flag with its
// variable and its default, once: a usage text that states its own default
// ("(default: ...)") or a zero default prints none.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: leakwatch %s\n\nFlags (long ones also set by their environment variable):\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			head, usage := flagName(f), f.Usage
			if strings.Contains(usage, "`") { // "`FILE` to write": -o FILE
				var arg string
				arg, usage = flag.UnquoteUsage(f)
				head += " " + arg
			}
			if hasEnv(f) {
				head += " (" + envName(f.Name) + ")"
			}
			if def := defaultText(f); def != "" && !strings.Contains(usage, "(default") {
				usage += " (default " + def + ")"
			}
			fmt.Fprintf(stderr, "  %s\n    \t%s\n", head, usage)
		})
	}
	return fs
}

// defaultText is a flag's default as the README writes it: none for a zero
// value, durations without trailing zero units (1h, not 1h0m0s).
func defaultText(f *flag.Flag) string {
	switch f.DefValue {
	case "", "0", "0s", "false":
		return ""
	}
	if d, err := time.ParseDuration(f.DefValue); err == nil {
		s := d.String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	}
	return f.DefValue
}

// parseFlags applies LEAKWATCH_* variables, then the command line, which
// wins. A bad variable is an error naming it.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if !hasEnv(f) {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage
	}
	return nil
}

var errHelp = errors.New("help")
