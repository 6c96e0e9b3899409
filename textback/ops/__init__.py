"""Operations: the daemon's metrics, its health, and the incidents it mails to the admin."""
