//! Weight-file import (placeholder).
