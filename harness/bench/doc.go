// Package bench reads, validates and writes bench files: the YAML that says
// which DAK signs, which product profile applies, where output goes and
// which devices (targets) sit on the bench and how to reach them.
//
// # Concepts
//
//   - Bench file: YAML (see fixtures/benches/example.yaml for every field).
//     Relative paths in it are relative to the file's directory; Load
//     resolves them to absolute paths, so a Bench never depends on the
//     working directory.
//   - Validation happens once, here: after Load succeeds every required
//     field is present, every enum is known, every referenced file exists,
//     every regexp compiles and every duration parses. Drivers apply their
//     own defaults to optional fields left at the zero value.
//   - Errors: one *Error per problem, all problems reported together as
//     Errors, each naming file, line and field path, e.g.
//     `lab3.yaml:14: targets[1].console.baud: want an integer, got "fast"`.
//     Each matches a sentinel (ErrUnknownField, ErrMissingField, ...) and,
//     for missing files, fs.ErrNotExist.
//   - The parser walks yaml.Node itself rather than decoding into structs,
//     so it can report every problem with its line, suggest the field that
//     was probably meant, and resolve anchors, aliases and `<<` merges.
//   - Size and time: a file over MaxFileSize (4 MiB) is refused before it
//     is parsed, and a syntax error is located in linear time (yaml.v3's
//     read position bounds it; at most one more parse), so Load takes about
//     a second at most and needs no context: a CLI's SIGTERM is honoured
//     once it returns.
//   - Marshal/Write produce a file Load reads back to an equal Bench (used
//     by `hil sim` for simulated devices); Write refuses a bench Load would
//     reject.
package bench
