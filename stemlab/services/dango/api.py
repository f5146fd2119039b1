"""Dango wire facts (seed 003): limits, download rules, the docs' error
messages in English, and the 4-stem zip's member names."""

from __future__ import annotations

__all__ = ["MAX_SECONDS", "DOWNLOADS_PER_SONG", "URL_TTL", "RETENTION", "MAX_BATCH", "MESSAGES", "ZIP_NAMES",
           "english"]

MAX_SECONDS = 12 * 60.0  #: the service refuses longer songs
DOWNLOADS_PER_SONG = 7
URL_TTL = 20 * 60.0  #: seconds a download URL stays valid
RETENTION = 30 * 86400.0  #: seconds a finished song is kept
MAX_BATCH = 20  #: ids per batch status request (assumption: the docs give no limit)

#: the docs' Chinese error messages → English (shown next to the original)
MESSAGES = {
    "余额不足": "not enough points on the account",
    "暂不支持的文件格式": "unsupported file format",
    "上传的歌曲不允许超过12分钟": "songs longer than 12 minutes are refused",
    "歌曲已过期": "the song expired (kept 30 days)",
    "歌曲不存在": "no such song",
    "无法下载的文件": "file cannot be downloaded (FLAC needs a lossless upload)",
    "歌曲仍在准备中": "the song is not ready",
    "已经超过最大下载次数": "all 7 downloads of this song are used up",
    "当前模型没有4音轨模式": "this algorithm has no 4-stem mode",
}
#: 4-stem zip member name fragments → stemlab stem (Chinese and English)
ZIP_NAMES = (("vocal", "vocals"), ("人声", "vocals"), ("drum", "drums"), ("鼓", "drums"), ("bass", "bass"),
              ("贝斯", "bass"), ("other", "other"), ("其他", "other"), ("其它", "other"))



def english(message: str) -> str:
    """``message`` with the English of a known Chinese error text in front."""
    for zh, en in MESSAGES.items():
        if zh in message:
            return f"{en} ({message})"
    return message
