package cli

import (
	"embed"
	"regexp"
	"strings"
)

// The help texts are the ones rethinkdb 2.4.4 prints (recorded in
// e2e/testdata/rethinkdb-2.4.4/cli). serve-help.txt, printed for `help
// serve` and `serve --help`, is the recording of that name; it equals
// help.txt, although the 2.4.4 source prints a serve-specific text ("'rethinkdb
// serve' is the actual process for a RethinkDB server."). The recordings win.
//
//go:embed help/*.txt
var helpFS embed.FS

func helpText(cmd command) string {
	name := map[command]string{
		cmdPorcelain: "help/help.txt",
		cmdServe:     "help/serve-help.txt",
		cmdProxy:     "help/proxy-help.txt",
		cmdCreate:    "help/create-help.txt",
	}[cmd]
	b, err := helpFS.ReadFile(name)
	if err != nil {
		// The files are embedded at build time; a missing one is a build bug.
		panic("rethinkdb-sim: missing embedded help " + name)
	}
	return string(b)
}

// helpCommandName is how the real server names a subcommand in
// "Run 'rethinkdb help<name>' for help on the command".
func helpCommandName(cmd command) string {
	switch cmd {
	case cmdServe:
		return " serve"
	case cmdProxy:
		return " proxy"
	case cmdCreate:
		return " create"
	}
	return ""
}

var twoSpaces = regexp.MustCompile(`\s{2,}`)

// usageFor returns the "Usage:" block the real server prints under a named
// option error: the first help entry whose syntax mentions the option (a
// plain substring search, as the real server does), or "" if none does.
func usageFor(cmd command, option string) string {
	lines := strings.Split(helpText(cmd), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if !strings.HasPrefix(line, "  -") {
			continue
		}
		syntax := twoSpaces.Split(strings.TrimSpace(line), 2)[0]
		if !strings.Contains(syntax, option) {
			continue
		}
		entry := []string{line}
		for j := i + 1; j < len(lines); j++ {
			next := lines[j]
			if !strings.HasPrefix(next, "    ") {
				break
			}
			entry = append(entry, next)
		}
		return "Usage:\n" + strings.Join(entry, "\n") + "\n\n"
	}
	return ""
}
