//! kaizen-adapters: the parts of kaizen that talk to the outside world (git, HTTP, LLMs).

pub mod llm;
