package command

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: `Prints a script that completes fleetplan's commands and flags. Install it:

   bash:  source <(fleetplan completion bash)        (in ~/.bashrc), or
          fleetplan completion bash > /etc/bash_completion.d/fleetplan
   zsh:   fleetplan completion zsh > "${fpath[1]}/_fleetplan"
   fish:  fleetplan completion fish > ~/.config/fish/completions/fleetplan.fish

bash and zsh ask fleetplan itself for the candidates (--generate-bash-completion),
so they follow the binary's version; the fish script lists them.`,
		Action: completionAction,
	})
	register(&cli.Command{
		Name:  "man",
		Usage: "print fleetplan's man page (roff), generated from the commands' help",
		Description: `Install it with:

   fleetplan man > /usr/local/share/man/man1/fleetplan.1   (or: make man)`,
		Action: func(c *cli.Context) error {
			if _, err := initCommand(c, withNoArgs()); err != nil {
				return err
			}
			page, err := c.App.ToManWithSection(1)
			if err != nil {
				return exit(ExitInternal, "man: generating the man page: %v", err)
			}
			fmt.Fprint(c.App.Writer, page)
			return nil
		},
	})
}

func completionAction(c *cli.Context) error {
	b, err := initCommand(c, withExactArgs(1, "shell (bash, zsh or fish)"))
	if err != nil {
		return err
	}
	prog := c.App.Name
	switch b.args[0] {
	case "bash":
		fmt.Fprint(c.App.Writer, strings.ReplaceAll(bashCompletion, "@PROG@", prog))
	case "zsh":
		fmt.Fprint(c.App.Writer, strings.ReplaceAll(zshCompletion, "@PROG@", prog))
	case "fish":
		script, err := c.App.ToFishCompletion()
		if err != nil {
			return exit(ExitInternal, "completion fish: %v", err)
		}
		fmt.Fprint(c.App.Writer, script)
	default:
		return exit(ExitUsage, "completion: unknown shell %q (bash, zsh or fish)", b.args[0])
	}
	return nil
}

// bashCompletion is urfave/cli's bash completion script
// (autocomplete/bash_autocomplete): the shell asks the program for the
// candidates with --generate-bash-completion.
const bashCompletion = `# bash completion for @PROG@ (fleetplan completion bash)
_@PROG@_init_completion() {
  COMPREPLY=()
  _get_comp_words_by_ref "$@" cur prev words cword
}

_@PROG@_bash_autocomplete() {
  if [[ "${COMP_WORDS[0]}" != "source" ]]; then
    local cur opts base words
    COMPREPLY=()
    cur="${COMP_WORDS[COMP_CWORD]}"
    if declare -F _init_completion >/dev/null 2>&1; then
      _init_completion -n "=:" || return
    else
      _@PROG@_init_completion -n "=:" || return
    fi
    words=("${words[@]:0:$cword}")
    if [[ "$cur" == "-"* ]]; then
      requestComp="${words[*]} ${cur} --generate-bash-completion"
    else
      requestComp="${words[*]} --generate-bash-completion"
    fi
    opts=$(eval "${requestComp}" 2>/dev/null)
    COMPREPLY=($(compgen -W "${opts}" -- ${cur}))
    return 0
  fi
}

complete -o bashdefault -o default -o nospace -F _@PROG@_bash_autocomplete @PROG@
`

// zshCompletion is urfave/cli's zsh completion script
// (autocomplete/zsh_autocomplete).
const zshCompletion = `#compdef @PROG@
# zsh completion for @PROG@ (fleetplan completion zsh)

_@PROG@_zsh_autocomplete() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion)}")
  fi

  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}

compdef _@PROG@_zsh_autocomplete @PROG@
`
