module github.com/espy-dpi/espy

go 1.26
