// The read-model helpers (in-memory key/value, SQLite) land in the next commit.
#pragma once
