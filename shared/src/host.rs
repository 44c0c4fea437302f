//! This machine's (or container's) name: in worker ids, and in the service-API metadata that
//! lets a container's health check find its own process among several replicas.

use crate::config::{self, Lookup};

/// `HOSTNAME` when set (Docker sets it to the container's name), else the kernel's hostname.
pub fn hostname(lookup: &dyn Lookup) -> Option<String> {
    config::value(lookup, "HOSTNAME").or_else(|| {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|h| h.trim().to_string())
            .find(|h| !h.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lookup_from;

    #[test]
    fn hostname_prefers_the_variable_and_falls_back_to_the_kernel() {
        let set = lookup_from(&[("HOSTNAME", " box-7 ")]);
        assert_eq!(hostname(&set).as_deref(), Some("box-7"));
        let unset = lookup_from(&[]);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(hostname(&unset).as_deref(), Some(kernel.trim()));
    }
}
