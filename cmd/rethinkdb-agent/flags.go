package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// envPrefix: every flag --some-name can also be set as RETHINKDB_AGENT_SOME_NAME.
const envPrefix = "RETHINKDB_AGENT_"

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// listFlag is a repeatable flag (--peer a --peer b); from the environment it
// takes a comma-separated list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// applyEnv sets every flag that the command line left unset from its
// environment variable. aliases maps a flag to extra variable names (for
// example --peer also reads RETHINKDB_AGENT_PEERS). Errors name the variable.
func applyEnv(fs *flag.FlagSet, aliases map[string][]string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		for _, name := range append([]string{envName(f.Name)}, aliases[f.Name]...) {
			v, ok := os.LookupEnv(name)
			if !ok {
				continue
			}
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment variable %s: %v", name, e)
			}
			return
		}
	})
	return err
}
