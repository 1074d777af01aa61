package cli

import (
	"fmt"
	"os"
	"strings"
)

// The option tables and the parser follow what rethinkdb 2.4.4 does, because
// the agent and its tests must see the same refusals from the simulator as
// from a real server:
//   - an option is a whole argument: `--cluster-port 4000`. The real parser
//     has no `--opt=value` form; `--cluster-port=4000` is an unrecognized
//     option there, so it is one here too (accepting it would let a command
//     line pass the tests and then fail in production);
//   - a parameter that starts with '-' or is empty counts as missing;
//   - options given more often than allowed, or a missing mandatory option,
//     are reported after --help/--version are handled;
//   - a --config-file holds `name=value` lines (and bare names for options
//     without a parameter); the command line wins over the file.

type appearance int

const (
	optional appearance = iota
	optionalRepeat
	mandatoryRepeat
	noParameter
)

type optionSpec struct {
	names      []string // official name first
	appearance appearance
	def        []string // default values, nil when the option has none
}

func (o optionSpec) name() string { return o.names[0] }

func opt(a appearance, names ...string) optionSpec {
	return optionSpec{names: names, appearance: a}
}

func optDefault(def string, names ...string) optionSpec {
	return optionSpec{names: names, appearance: optional, def: []string{def}}
}

// Default ports of rethinkdb 2.4.4.
const (
	defaultClusterPort = 29015
	defaultDriverPort  = 28015
	defaultHTTPPort    = 8080
)

func fileOptions() []optionSpec {
	return []optionSpec{
		optDefault("rethinkdb_data", "--directory", "-d"),
		optDefault("64", "--io-threads"),
		opt(noParameter, "--direct-io"),
		opt(optional, "--cache-size"),
	}
}

func serverOptions() []optionSpec {
	return []optionSpec{
		opt(optional, "--server-name", "-n"),
		opt(optionalRepeat, "--server-tag", "-t"),
	}
}

func networkOptions(joinRequired bool) []optionSpec {
	join := opt(optionalRepeat, "--join", "-j")
	if joinRequired {
		join.appearance = mandatoryRepeat
	}
	return []optionSpec{
		opt(optionalRepeat, "--bind"),
		opt(optionalRepeat, "--bind-cluster"),
		opt(optionalRepeat, "--bind-driver"),
		opt(optionalRepeat, "--bind-http"),
		opt(noParameter, "--no-default-bind"),
		optDefault(fmt.Sprint(defaultClusterPort), "--cluster-port"),
		// Hidden in the help, but accepted by the real server.
		optDefault("0", "--client-port"),
		optDefault(fmt.Sprint(defaultDriverPort), "--driver-port"),
		optDefault("0", "--port-offset", "-o"),
		join,
		opt(optional, "--reql-http-proxy"),
		opt(optionalRepeat, "--canonical-address"),
		opt(optional, "--join-delay"),
		optDefault("86400", "--cluster-reconnect-timeout"),
	}
}

func tlsOptions() []optionSpec {
	var out []optionSpec
	for _, n := range []string{
		"--http-tls-key", "--http-tls-cert",
		"--driver-tls-key", "--driver-tls-cert", "--driver-tls-ca",
		"--cluster-tls-key", "--cluster-tls-cert", "--cluster-tls-ca",
		"--tls-min-protocol", "--tls-ciphers", "--tls-ecdh-curve", "--tls-dhparams",
	} {
		out = append(out, opt(optional, n))
	}
	return out
}

func authOptions() []optionSpec { return []optionSpec{opt(optional, "--initial-password")} }

func webOptions() []optionSpec {
	return []optionSpec{
		opt(optional, "--web-static-directory"),
		optDefault(fmt.Sprint(defaultHTTPPort), "--http-port"),
		opt(noParameter, "--no-http-admin"),
	}
}

func cpuOptions() []optionSpec { return []optionSpec{opt(optional, "--cores", "-c")} }

func serviceOptions() []optionSpec {
	return []optionSpec{opt(optional, "--pid-file"), opt(noParameter, "--daemon")}
}

func setuserOptions() []optionSpec {
	return []optionSpec{opt(optional, "--runuser"), opt(optional, "--rungroup")}
}

func helpOptions() []optionSpec {
	return []optionSpec{opt(noParameter, "--help", "-h"), opt(noParameter, "--version", "-v")}
}

func logOptions() []optionSpec {
	return []optionSpec{opt(optional, "--log-file"), opt(noParameter, "--no-update-check")}
}

func configFileOptions() []optionSpec { return []optionSpec{opt(optional, "--config-file")} }

func concat(groups ...[]optionSpec) []optionSpec {
	var out []optionSpec
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// optionsFor returns the options a subcommand accepts, with the groups of
// rethinkdb 2.4.4: `serve` has no server options (name and tags belong to
// the data directory, set by `create` or the porcelain command), `proxy` has
// no file, server or CPU options.
func optionsFor(cmd command) []optionSpec {
	switch cmd {
	case cmdCreate:
		return concat(fileOptions(), serverOptions(), authOptions(), setuserOptions(),
			helpOptions(), logOptions(), configFileOptions())
	case cmdServe:
		return concat(fileOptions(), networkOptions(false), tlsOptions(), authOptions(),
			webOptions(), cpuOptions(), serviceOptions(), setuserOptions(), helpOptions(),
			logOptions(), configFileOptions())
	case cmdProxy:
		return concat(networkOptions(true), tlsOptions(), authOptions(), webOptions(),
			serviceOptions(), setuserOptions(), helpOptions(), logOptions(), configFileOptions())
	default:
		return concat(fileOptions(), serverOptions(), networkOptions(false), tlsOptions(),
			authOptions(), webOptions(), cpuOptions(), serviceOptions(), setuserOptions(),
			helpOptions(), logOptions(), configFileOptions())
	}
}

func findOption(name string, specs []optionSpec) *optionSpec {
	for i := range specs {
		for _, n := range specs[i].names {
			if n == name {
				return &specs[i]
			}
		}
	}
	return nil
}

// values is what one option received, and from where.
type values struct {
	source string // "the command line", "the configuration file X", "the default value"
	vals   []string
}

type parsed map[string]*values

// has reports whether the option has a value (given, or a default).
func (p parsed) has(name string) bool {
	v, ok := p[name]
	return ok && len(v.vals) > 0
}

// get returns the single value of an option, or "" and false.
func (p parsed) get(name string) (string, bool) {
	v, ok := p[name]
	if !ok || len(v.vals) == 0 {
		return "", false
	}
	return v.vals[0], true
}

func (p parsed) all(name string) []string {
	if v, ok := p[name]; ok {
		return v.vals
	}
	return nil
}

func (p parsed) sourceOf(name string) string {
	if v, ok := p[name]; ok {
		return v.source
	}
	return "the command line"
}

// optionError is the real server's options::option_error_t: printed as
// "Error in <source>: <msg>". When option is set it is a named error and the
// option's help line is printed below it as "Usage:".
type optionError struct {
	source string
	msg    string
	option string
}

func (e *optionError) Error() string { return e.msg }

// plainError is any other failure: its text is printed as is, then exit 1.
type plainError struct{ msg string }

func (e *plainError) Error() string { return e.msg }

func plainf(format string, args ...any) error { return &plainError{msg: fmt.Sprintf(format, args...)} }

const cmdLineSource = "the command line"

func looksLikeOption(s string) bool { return strings.HasPrefix(s, "-") }

func parseCommandLine(args []string, specs []optionSpec) (parsed, error) {
	out := parsed{}
	for i := 0; i < len(args); {
		name := args[i]
		i++
		o := findOption(name, specs)
		if o == nil {
			if looksLikeOption(name) {
				return nil, &optionError{source: cmdLineSource, msg: fmt.Sprintf("Unrecognized option '%s'.", name)}
			}
			return nil, &optionError{source: cmdLineSource, msg: fmt.Sprintf(
				"Unexpected positional parameter '%s' (did you forget the option name, or forget to quote a parameter list?).", name)}
		}
		v := out[o.name()]
		if v == nil {
			v = &values{source: cmdLineSource}
			out[o.name()] = v
		}
		if o.appearance == noParameter {
			v.vals = append(v.vals, "")
			continue
		}
		if i == len(args) || looksLikeOption(args[i]) || args[i] == "" {
			return nil, &optionError{source: cmdLineSource, option: name,
				msg: fmt.Sprintf("Option '%s' is missing its parameter.", name)}
		}
		v.vals = append(v.vals, args[i])
		i++
	}
	return out, nil
}

// parseConfigFile reads `name=value` lines; '#' starts a comment. Options
// that belong to another subcommand are ignored with the real warning.
func parseConfigFile(path string, specs []optionSpec, warn func(string)) (parsed, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, plainf("Trouble reading config file '%s'", path)
	}
	source := "the configuration file " + path
	superset := concat(optionsFor(cmdCreate), optionsFor(cmdServe), optionsFor(cmdProxy), optionsFor(cmdPorcelain))
	out := parsed{}
	var ignored []string
	lines := strings.Split(string(data), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for n, line := range lines {
		parseErr := func(detail string) error {
			msg := fmt.Sprintf("Config file %s: parse error at line %d", path, n)
			if detail != "" {
				msg += ": " + detail
			}
			return &optionError{source: source, msg: msg}
		}
		if k := strings.IndexByte(line, '#'); k >= 0 {
			line = line[:k]
		}
		line = strings.TrimRight(line, " \t\r\n\v\f")
		trimmed := strings.TrimLeft(line, " \t\r\n\v\f")
		if trimmed == "" {
			continue
		}
		end := strings.IndexAny(trimmed, " \t\r\n\v\f=")
		if end == 0 {
			return nil, parseErr("")
		}
		if end < 0 {
			end = len(trimmed)
		}
		name := trimmed[:end]
		rest := trimmed[end:]
		o := findOption("--"+name, specs)
		if o == nil {
			if findOption("--"+name, superset) == nil {
				return nil, parseErr(fmt.Sprintf("unrecognized option name '%s'", name))
			}
			ignored = appendUnique(ignored, name)
			continue
		}
		v := out[o.name()]
		if v == nil {
			v = &values{source: source}
			out[o.name()] = v
		}
		if o.appearance == noParameter {
			if line != name {
				return nil, parseErr(fmt.Sprintf("unexpected data after no-parameter option '%s'", name))
			}
			v.vals = append(v.vals, "")
			continue
		}
		rest = strings.TrimLeft(rest, " \t\r\n\v\f")
		if !strings.HasPrefix(rest, "=") {
			return nil, parseErr("")
		}
		value := strings.TrimLeft(rest[1:], " \t\r\n\v\f")
		if value == "" {
			return nil, parseErr(fmt.Sprintf("no parameter for option '%s'", name))
		}
		v.vals = append(v.vals, value)
	}
	if len(ignored) > 0 && warn != nil {
		warn("Warning: The following options are not used by this invocation of rethinkdb and will be ignored: " +
			strings.Join(ignored, ", "))
	}
	return out, nil
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// merge lays high over low: an option set in high replaces low's values.
func merge(high, low parsed) parsed {
	out := parsed{}
	for k, v := range low {
		out[k] = v
	}
	for k, v := range high {
		out[k] = v
	}
	return out
}

func defaults(specs []optionSpec) parsed {
	out := parsed{}
	for _, o := range specs {
		if o.appearance == optional || o.appearance == optionalRepeat || o.appearance == noParameter {
			out[o.name()] = &values{source: "the default value", vals: append([]string(nil), o.def...)}
		}
	}
	return out
}

// verifyCounts is the real verify_option_counts.
func verifyCounts(specs []optionSpec, p parsed) error {
	for _, o := range specs {
		v, ok := p[o.name()]
		n := 0
		if ok {
			n = len(v.vals)
		}
		lo, hi := 0, 1
		switch o.appearance {
		case optionalRepeat:
			hi = -1
		case mandatoryRepeat:
			lo, hi = 1, -1
		}
		if n < lo {
			return &optionError{source: "command line", option: o.name(),
				msg: fmt.Sprintf("Option '%s' must be specified.", o.name())}
		}
		if hi >= 0 && n > hi {
			return &optionError{source: v.source, option: o.name(),
				msg: fmt.Sprintf("Option '%s' specified too many times.", o.name())}
		}
	}
	return nil
}
